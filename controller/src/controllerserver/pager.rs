//! Paging across backends, for ListVolumes and ListSnapshots: a token is
//! `<backend index>/<that backend's token>`, so it stays valid while volumes come and go.

use std::{future::Future, sync::Arc};

use rwxnfs_model::Name;

use crate::{ControllerError, backend::Backend};

/// What one backend's page holds: its entries and that backend's next token ("" at its end).
pub(super) type Page<T> = (Vec<T>, String);

/// One page of at most `max_entries` (0: no limit) entries across `backends`, in their order,
/// from `starting_token`, each backend asked with `fetch(backend, room, its token)`; with
/// `only`, every other backend is skipped and no token leads past it.
pub(super) async fn page<T, F, Fut>(
    backends: &[Arc<dyn Backend>],
    only: Option<&Name>,
    starting_token: &str,
    max_entries: i32,
    mut fetch: F,
) -> Result<Page<T>, ControllerError>
where
    F: FnMut(Arc<dyn Backend>, i32, String) -> Fut,
    Fut: Future<Output = Result<Page<T>, ControllerError>>,
{
    let (mut index, mut token) = parse_page_token(starting_token, backends.len())?;
    let mut entries = Vec::new();
    while index < backends.len() {
        let backend = &backends[index];
        if only.is_some_and(|b| b != backend.name()) {
            index += 1;
            token.clear();
            continue;
        }
        let room = if max_entries == 0 {
            0
        } else {
            max_entries - entries.len() as i32
        };
        let (mut found, next) = fetch(backend.clone(), room, std::mem::take(&mut token)).await?;
        entries.append(&mut found);
        if !next.is_empty() {
            return Ok((entries, page_token(index, &next)));
        }
        index += 1;
        if max_entries > 0 && entries.len() as i32 >= max_entries {
            let more = index < backends.len() && only.is_none();
            let next = if more {
                page_token(index, "")
            } else {
                String::new()
            };
            return Ok((entries, next));
        }
    }
    Ok((entries, String::new()))
}

/// The backend index and that backend's token; ABORTED for a token we did not issue.
fn parse_page_token(token: &str, backends: usize) -> Result<(usize, String), ControllerError> {
    if token.is_empty() {
        return Ok((0, String::new()));
    }
    token
        .split_once('/')
        .and_then(|(i, rest)| i.parse::<usize>().ok().map(|i| (i, rest.to_owned())))
        .filter(|(i, _)| *i < backends)
        .ok_or_else(|| ControllerError::ForeignPageToken {
            token: token.to_owned(),
        })
}

fn page_token(index: usize, backend_token: &str) -> String {
    format!("{index}/{backend_token}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::backend::fake::FakeBackend;

    #[test]
    fn page_tokens_round_trip_and_garbage_aborts() {
        assert_eq!(
            parse_page_token(&page_token(1, "after:x"), 2).unwrap(),
            (1, "after:x".into())
        );
        assert_eq!(parse_page_token("", 2).unwrap(), (0, String::new()));
        for bad in ["x", "5/after:a", "after:a"] {
            assert_eq!(
                parse_page_token(bad, 2).unwrap_err().code(),
                tonic::Code::Aborted
            );
        }
    }

    fn backends() -> Vec<Arc<dyn Backend>> {
        vec![
            Arc::new(FakeBackend::new("a")),
            Arc::new(FakeBackend::new("b")),
        ]
    }

    /// Each backend holds three entries and pages them two at a time at most.
    async fn fetch(
        backend: Arc<dyn Backend>,
        room: i32,
        token: String,
    ) -> Result<Page<String>, ControllerError> {
        let start: usize = token.parse().unwrap_or(0);
        let end = if room == 0 {
            3
        } else {
            (start + room.min(2) as usize).min(3)
        };
        let entries = (start..end)
            .map(|i| format!("{}{i}", backend.name()))
            .collect();
        let next = if end < 3 {
            end.to_string()
        } else {
            String::new()
        };
        Ok((entries, next))
    }

    #[tokio::test]
    async fn pages_resume_inside_a_backend_and_move_on_to_the_next() {
        let backends = backends();
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let (entries, next) = page(&backends, None, &token, 2, fetch).await.unwrap();
            seen.push(entries);
            if next.is_empty() {
                break;
            }
            token = next;
        }
        // A page that ends a backend is filled from the next one.
        assert_eq!(seen, [["a0", "a1"], ["a2", "b0"], ["b1", "b2"]]);
        let (all, next) = page(&backends, None, "", 0, fetch).await.unwrap();
        assert_eq!((all.len(), next.as_str()), (6, ""));
    }

    #[tokio::test]
    async fn a_pinned_backend_is_listed_alone_and_no_token_leads_past_it() {
        let backends = backends();
        let a = Name::parse("a").unwrap();
        let (entries, next) = page(&backends, Some(&a), "", 3, fetch).await.unwrap();
        assert_eq!(entries, ["a0", "a1"]);
        let (entries, next) = page(&backends, Some(&a), &next, 3, fetch).await.unwrap();
        assert_eq!((entries, next.as_str()), (vec!["a2".to_string()], ""));
        let b = Name::parse("b").unwrap();
        let (entries, _) = page(&backends, Some(&b), "", 0, fetch).await.unwrap();
        assert_eq!(entries, ["b0", "b1", "b2"]);
    }
}
