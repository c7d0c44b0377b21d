//! Running specs and printing one line per spec plus the closing summary.

use std::{io::Write, time::Instant};

use crate::{
    context::Ctx,
    specs::{self, Check},
    verdict::Verdict,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed(String),
    /// Not applicable to this driver, or its check is not written yet.
    Skipped(String),
}

#[derive(Debug, Default)]
pub struct Report {
    pub results: Vec<(&'static str, Outcome)>,
}

impl Report {
    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.results.iter().filter(|(_, o)| f(o)).count()
    }
    pub fn passed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Passed))
    }
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed(_)))
    }
    pub fn skipped(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Skipped(_)))
    }
    /// The specs that failed, with why.
    pub fn failures(&self) -> Vec<(&'static str, &str)> {
        self.results
            .iter()
            .filter_map(|(name, o)| match o {
                Outcome::Failed(why) => Some((*name, why.as_str())),
                _ => None,
            })
            .collect()
    }
    pub fn outcome(&self, name: &str) -> Option<&Outcome> {
        self.results
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, o)| o)
    }
    pub fn summary(&self) -> String {
        format!(
            "{} passed, {} failed, {} skipped",
            self.passed(),
            self.failed(),
            self.skipped()
        )
    }
}

pub async fn run_all(ctx: &Ctx, out: &mut dyn Write) -> Report {
    let mut report = Report::default();
    for spec in specs::all() {
        if !ctx.config.selects(spec.name) {
            continue;
        }
        let started = Instant::now();
        let outcome = match (spec.needs.iter().find_map(|n| ctx.unmet(*n)), &spec.check) {
            (Some(reason), _) => Outcome::Skipped(format!("not applicable: {reason}")),
            (None, Check::NotWritten) => Outcome::Skipped("check not written yet".into()),
            (None, Check::Run(check)) => {
                match tokio::time::timeout(ctx.config.spec_timeout, check(ctx)).await {
                    Ok(Ok(())) => Outcome::Passed,
                    Ok(Err(Verdict::Failed(why))) => Outcome::Failed(why),
                    Ok(Err(Verdict::NotApplicable(why))) => {
                        Outcome::Skipped(format!("not applicable: {why}"))
                    }
                    Err(_) => Outcome::Failed(format!(
                        "did not finish within {:?}",
                        ctx.config.spec_timeout
                    )),
                }
            }
        };
        // Whatever the outcome, leave nothing behind; a failed clean-up fails the spec.
        let problems = ctx.clean_up().await;
        let outcome = match (outcome, problems.is_empty()) {
            (Outcome::Passed, false) => Outcome::Failed(problems.join("; ")),
            (outcome, _) => outcome,
        };
        let ms = started.elapsed().as_millis();
        let _ = match &outcome {
            Outcome::Passed => writeln!(out, "PASS  {} ({ms} ms)", spec.name),
            Outcome::Failed(why) => writeln!(out, "FAIL  {} ({ms} ms)\n      {why}", spec.name),
            Outcome::Skipped(why) => writeln!(out, "SKIP  {}: {why}", spec.name),
        };
        report.results.push((spec.name, outcome));
    }
    let _ = writeln!(out, "{}", report.summary());
    report
}
