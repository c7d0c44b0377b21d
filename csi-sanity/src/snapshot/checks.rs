//! CreateSnapshot, DeleteSnapshot, GetSnapshot and ListSnapshots checks.

use rwxnfs_proto::csi::{
    CreateSnapshotRequest, DeleteSnapshotRequest, GetSnapshotRequest, ListSnapshotsRequest,
};
use tonic::Code;

use crate::{
    context::Ctx,
    resources::unique,
    verdict::{SpecResult, ensure, expect_code, fail},
};

async fn source(ctx: &Ctx, label: &str) -> Result<String, crate::verdict::Verdict> {
    Ok(ctx
        .create_volume(ctx.volume_request(&unique(label), None))
        .await?
        .volume_id)
}

pub(super) async fn create_no_name(ctx: &Ctx) -> SpecResult {
    let req = CreateSnapshotRequest {
        source_volume_id: "testId".into(),
        ..Default::default()
    };
    expect_code(
        ctx.controller().create_snapshot(req).await,
        Code::InvalidArgument,
    )
}

pub(super) async fn create_no_source(ctx: &Ctx) -> SpecResult {
    let req = CreateSnapshotRequest {
        name: unique("no-source"),
        ..Default::default()
    };
    expect_code(
        ctx.controller().create_snapshot(req).await,
        Code::InvalidArgument,
    )
}

pub(super) async fn create_same_name_other_source(ctx: &Ctx) -> SpecResult {
    let name = unique("snap-conflict");
    let a = source(ctx, "snap-src-a").await?;
    let b = source(ctx, "snap-src-b").await?;
    ctx.create_snapshot(&name, &a).await?;
    let req = CreateSnapshotRequest {
        name,
        source_volume_id: b,
        ..Default::default()
    };
    expect_code(
        ctx.controller().create_snapshot(req).await,
        Code::AlreadyExists,
    )
}

pub(super) async fn create_maximum_length_name(ctx: &Ctx) -> SpecResult {
    let src = source(ctx, "snap-maxlen-src").await?;
    ctx.create_snapshot(&"a".repeat(128), &src).await?;
    Ok(())
}

pub(super) async fn create_same_name_same_source(ctx: &Ctx) -> SpecResult {
    let name = unique("snap-again");
    let src = source(ctx, "snap-again-src").await?;
    let first = ctx.create_snapshot(&name, &src).await?;
    let second = ctx.create_snapshot(&name, &src).await?;
    ensure(first.snapshot_id == second.snapshot_id, || {
        format!(
            "the same request returned {} and {}",
            first.snapshot_id, second.snapshot_id
        )
    })
}

pub(super) async fn delete_no_id(ctx: &Ctx) -> SpecResult {
    expect_code(
        ctx.controller()
            .delete_snapshot(DeleteSnapshotRequest::default())
            .await,
        Code::InvalidArgument,
    )
}

pub(super) async fn delete_invalid_id(ctx: &Ctx) -> SpecResult {
    let req = DeleteSnapshotRequest {
        snapshot_id: "reallyfakesnapshotid".into(),
        ..Default::default()
    };
    ctx.controller().delete_snapshot(req).await?;
    Ok(())
}

pub(super) async fn delete_works(ctx: &Ctx) -> SpecResult {
    let src = source(ctx, "snap-delete-src").await?;
    let snap = ctx.create_snapshot(&unique("snap-delete"), &src).await?;
    let req = DeleteSnapshotRequest {
        snapshot_id: snap.snapshot_id,
        ..Default::default()
    };
    ctx.controller().delete_snapshot(req.clone()).await?;
    ctx.controller().delete_snapshot(req).await?;
    Ok(())
}

pub(super) async fn get_no_id(ctx: &Ctx) -> SpecResult {
    expect_code(
        ctx.controller()
            .get_snapshot(GetSnapshotRequest::default())
            .await,
        Code::InvalidArgument,
    )
}

pub(super) async fn get_missing(ctx: &Ctx) -> SpecResult {
    let req = GetSnapshotRequest {
        snapshot_id: "none-exist-id".into(),
        ..Default::default()
    };
    expect_code(ctx.controller().get_snapshot(req).await, Code::NotFound)
}

pub(super) async fn get_works(ctx: &Ctx) -> SpecResult {
    let src = source(ctx, "snap-get-src").await?;
    let snap = ctx.create_snapshot(&unique("snap-get"), &src).await?;
    let req = GetSnapshotRequest {
        snapshot_id: snap.snapshot_id.clone(),
        ..Default::default()
    };
    let got = ctx
        .controller()
        .get_snapshot(req)
        .await?
        .into_inner()
        .snapshot;
    let Some(got) = got else {
        return fail("GetSnapshot returned no snapshot");
    };
    ensure(
        got.snapshot_id == snap.snapshot_id && got.source_volume_id == src,
        || format!("GetSnapshot returned {got:?}"),
    )
}

async fn list(
    ctx: &Ctx,
    req: ListSnapshotsRequest,
) -> Result<Vec<rwxnfs_proto::csi::Snapshot>, crate::verdict::Verdict> {
    let r = ctx.controller().list_snapshots(req).await?.into_inner();
    Ok(r.entries.into_iter().filter_map(|e| e.snapshot).collect())
}

pub(super) async fn list_appropriate_values(ctx: &Ctx) -> SpecResult {
    list(ctx, ListSnapshotsRequest::default()).await.map(|_| ())
}

pub(super) async fn list_presence(ctx: &Ctx) -> SpecResult {
    let src = source(ctx, "snap-list-src").await?;
    let snap = ctx.create_snapshot(&unique("snap-list"), &src).await?;
    let all = list(ctx, ListSnapshotsRequest::default()).await?;
    ensure(
        all.iter().any(|s| s.snapshot_id == snap.snapshot_id),
        || format!("snapshot {} is not listed", snap.snapshot_id),
    )
}

pub(super) async fn list_missing_snapshot_id(ctx: &Ctx) -> SpecResult {
    let req = ListSnapshotsRequest {
        snapshot_id: "none-exist-id".into(),
        ..Default::default()
    };
    let found = list(ctx, req).await?;
    ensure(found.is_empty(), || {
        format!("a missing snapshot id matched {} snapshots", found.len())
    })
}

pub(super) async fn list_missing_source(ctx: &Ctx) -> SpecResult {
    let req = ListSnapshotsRequest {
        source_volume_id: "none-exist-volume-id".into(),
        ..Default::default()
    };
    let found = list(ctx, req).await?;
    ensure(found.is_empty(), || {
        format!("a missing source volume matched {} snapshots", found.len())
    })
}

pub(super) async fn list_next_token(ctx: &Ctx) -> SpecResult {
    let src = source(ctx, "snap-page-src").await?;
    for i in 0..3 {
        ctx.create_snapshot(&unique(&format!("snap-page-{i}")), &src)
            .await?;
    }
    let r = ctx
        .controller()
        .list_snapshots(ListSnapshotsRequest {
            max_entries: 2,
            ..Default::default()
        })
        .await?
        .into_inner();
    ensure(r.entries.len() == 2, || {
        format!("asked for 2 entries, got {}", r.entries.len())
    })?;
    ensure(!r.next_token.is_empty(), || {
        "no next_token although more snapshots exist".into()
    })?;
    let rest = ctx
        .controller()
        .list_snapshots(ListSnapshotsRequest {
            starting_token: r.next_token,
            ..Default::default()
        })
        .await?
        .into_inner();
    ensure(!rest.entries.is_empty(), || "the next page is empty".into())
}

pub(super) async fn list_by_snapshot_id(ctx: &Ctx) -> SpecResult {
    let src = source(ctx, "snap-byid-src").await?;
    let snap = ctx.create_snapshot(&unique("snap-byid"), &src).await?;
    ctx.create_snapshot(&unique("snap-byid-other"), &src)
        .await?;
    let req = ListSnapshotsRequest {
        snapshot_id: snap.snapshot_id.clone(),
        ..Default::default()
    };
    let found = list(ctx, req).await?;
    ensure(
        found.len() == 1 && found[0].snapshot_id == snap.snapshot_id,
        || format!("filtering by {} returned {found:?}", snap.snapshot_id),
    )
}

pub(super) async fn list_by_source(ctx: &Ctx) -> SpecResult {
    let a = source(ctx, "snap-bysrc-a").await?;
    let b = source(ctx, "snap-bysrc-b").await?;
    let snap = ctx.create_snapshot(&unique("snap-bysrc"), &a).await?;
    ctx.create_snapshot(&unique("snap-bysrc-other"), &b).await?;
    let req = ListSnapshotsRequest {
        source_volume_id: a.clone(),
        ..Default::default()
    };
    let found = list(ctx, req).await?;
    ensure(
        found.iter().any(|s| s.snapshot_id == snap.snapshot_id),
        || "the snapshot of the source is missing".into(),
    )?;
    ensure(found.iter().all(|s| s.source_volume_id == a), || {
        format!("snapshots of other sources matched: {found:?}")
    })
}
