//! The registry of specs: every behaviour upstream csi-sanity checks, by its upstream name.

use std::{future::Future, pin::Pin};

use crate::{
    context::{Ctx, Need},
    verdict::SpecResult,
};

pub type CheckFn = for<'a> fn(&'a Ctx) -> Pin<Box<dyn Future<Output = SpecResult> + Send + 'a>>;

pub enum Check {
    Run(CheckFn),
    /// The check is not written yet; the spec is reported as skipped, never as passed.
    NotWritten,
}

pub struct Spec {
    pub name: &'static str,
    pub needs: &'static [Need],
    pub check: Check,
}

/// `check!(path::to::async_fn)` turns an `async fn(&Ctx) -> SpecResult` into a [`Check`].
macro_rules! check {
    ($f:path) => {
        $crate::specs::Check::Run(|ctx| Box::pin($f(ctx)))
    };
}
pub(crate) use check;

pub(crate) const fn spec(name: &'static str, needs: &'static [Need], check: Check) -> Spec {
    Spec { name, needs, check }
}

/// All specs, sorted by name (the order upstream lists them in).
pub fn all() -> Vec<Spec> {
    let mut specs: Vec<Spec> = [
        crate::identity::specs(),
        crate::controller::specs(),
        crate::snapshot::specs(),
        crate::group_controller::specs(),
        crate::node::specs(),
    ]
    .into_iter()
    .flatten()
    .collect();
    specs.sort_by_key(|s| s.name);
    specs
}

#[cfg(test)]
mod tests {
    /// The upstream list, one name per line, as shipped with the project's conformance notes.
    const UPSTREAM: &str = include_str!("../upstream-specs.txt");

    #[test]
    fn every_upstream_spec_is_registered_exactly_once() {
        let ours: Vec<&str> = super::all().iter().map(|s| s.name).collect();
        let theirs: Vec<&str> = UPSTREAM.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(theirs.len(), 96);
        for name in &theirs {
            assert_eq!(
                ours.iter().filter(|n| *n == name).count(),
                1,
                "missing or doubled: {name}"
            );
        }
        assert_eq!(
            ours.len(),
            theirs.len(),
            "specs not in upstream's list are registered"
        );
    }
}
