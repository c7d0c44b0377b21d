//! ListVolumes checks.

use std::collections::BTreeSet;

use rwxnfs_proto::csi::{DeleteVolumeRequest, ListVolumesRequest};
use tonic::Code;

use crate::{
    context::Ctx,
    resources::unique,
    verdict::{SpecResult, ensure, expect_code, fail},
};

/// Every volume id, following tokens; bounded so a driver that loops cannot hang the run.
async fn all_ids(ctx: &Ctx, max_entries: i32) -> Result<BTreeSet<String>, crate::verdict::Verdict> {
    let mut ids = BTreeSet::new();
    let mut token = String::new();
    for _ in 0..10_000 {
        let r = ctx
            .controller()
            .list_volumes(ListVolumesRequest {
                max_entries,
                starting_token: token.clone(),
            })
            .await?
            .into_inner();
        for e in r.entries {
            let Some(v) = e.volume else {
                return fail("a ListVolumes entry has no volume");
            };
            ids.insert(v.volume_id);
        }
        if r.next_token.is_empty() {
            return Ok(ids);
        }
        token = r.next_token;
    }
    fail("ListVolumes kept returning tokens after 10000 pages")
}

pub(super) async fn appropriate_values(ctx: &Ctx) -> SpecResult {
    all_ids(ctx, 0).await.map(|_| ())
}

pub(super) async fn invalid_token(ctx: &Ctx) -> SpecResult {
    let req = ListVolumesRequest {
        max_entries: 0,
        starting_token: "invalid-token".into(),
    };
    expect_code(ctx.controller().list_volumes(req).await, Code::Aborted)
}

pub(super) async fn presence_and_absence(ctx: &Ctx) -> SpecResult {
    let a = ctx
        .create_volume(ctx.volume_request(&unique("list-a"), None))
        .await?;
    let b = ctx
        .create_volume(ctx.volume_request(&unique("list-b"), None))
        .await?;
    let ids = all_ids(ctx, 0).await?;
    ensure(
        ids.contains(&a.volume_id) && ids.contains(&b.volume_id),
        || "a new volume is missing from ListVolumes".into(),
    )?;
    let req = DeleteVolumeRequest {
        volume_id: a.volume_id.clone(),
        ..Default::default()
    };
    ctx.controller().delete_volume(req).await?;
    let ids = all_ids(ctx, 0).await?;
    ensure(!ids.contains(&a.volume_id), || {
        format!("deleted volume {} is still listed", a.volume_id)
    })?;
    ensure(ids.contains(&b.volume_id), || {
        format!("volume {} vanished", b.volume_id)
    })
}

/// Lists page by page while volumes come and go: a token must stay valid when the last volume
/// of its page is deleted, and every volume that existed throughout must be seen.
pub(super) async fn pagination(ctx: &Ctx) -> SpecResult {
    let mut created = Vec::new();
    for i in 0..4 {
        created.push(
            ctx.create_volume(ctx.volume_request(&unique(&format!("page-{i}")), None))
                .await?
                .volume_id,
        );
    }
    let before = all_ids(ctx, 0).await?;
    let first = ctx
        .controller()
        .list_volumes(ListVolumesRequest {
            max_entries: 2,
            starting_token: String::new(),
        })
        .await?
        .into_inner();
    ensure(first.entries.len() == 2, || {
        format!("asked for 2 entries, got {}", first.entries.len())
    })?;
    ensure(!first.next_token.is_empty() || before.len() <= 2, || {
        "no next_token with more volumes left".into()
    })?;
    let mut seen: BTreeSet<String> = first
        .entries
        .iter()
        .filter_map(|e| e.volume.as_ref())
        .map(|v| v.volume_id.clone())
        .collect();
    // Delete the last volume of the page, if it is one of ours, and add another.
    let last = first
        .entries
        .last()
        .and_then(|e| e.volume.as_ref())
        .map(|v| v.volume_id.clone());
    let mut deleted = None;
    if let Some(last) = last.filter(|l| created.contains(l)) {
        ctx.controller()
            .delete_volume(DeleteVolumeRequest {
                volume_id: last.clone(),
                ..Default::default()
            })
            .await?;
        deleted = Some(last);
    }
    ctx.create_volume(ctx.volume_request(&unique("page-added"), None))
        .await?;
    let mut token = first.next_token;
    while !token.is_empty() {
        let r = ctx
            .controller()
            .list_volumes(ListVolumesRequest {
                max_entries: 2,
                starting_token: token,
            })
            .await?
            .into_inner();
        seen.extend(
            r.entries
                .iter()
                .filter_map(|e| e.volume.as_ref())
                .map(|v| v.volume_id.clone()),
        );
        token = r.next_token;
        ensure(seen.len() < before.len() + 10_000, || {
            "pagination does not end".into()
        })?;
    }
    for id in before.iter().filter(|id| Some(*id) != deleted.as_ref()) {
        ensure(seen.contains(id), || {
            format!("volume {id} was never listed while paging")
        })?;
    }
    Ok(())
}
