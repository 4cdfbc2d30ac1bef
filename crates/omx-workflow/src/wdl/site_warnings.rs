//! One warning per site and cause. A task's runtime section is evaluated once per call that
//! reaches it, so the same unresolved image would be reported once per call and per workflow
//! a user might run (GATK-SV's `GATKSVPipelineBatch` and `GATKSVPipelineSingleSample` reach
//! hundreds of the same tasks). Warnings that differ only in the call they were evaluated
//! for (the call path, and the inputs-file keys under it) are one cause: the first is kept,
//! and it names the other calls that share it.

use std::collections::BTreeMap;

use crate::{Location, Warning, WarningKind};

/// How many of the other calls a merged warning names.
const CALLS_NAMED: usize = 3;

/// The warnings of every evaluation, grouped by site and cause.
#[derive(Default)]
pub(super) struct SiteWarnings {
    groups: BTreeMap<(Location, WarningKind, String), (String, Vec<String>)>,
}

impl SiteWarnings {
    /// Adds a warning from the evaluation of the call at `call_path` (`wf.call.subcall`).
    pub fn add(&mut self, warning: Warning, call_path: &str) {
        let cause = cause_of(&warning.message, call_path);
        let key = (warning.location, warning.kind, cause);
        let (_, calls) = self
            .groups
            .entry(key)
            .or_insert_with(|| (warning.message, Vec::new()));
        if !calls.iter().any(|c| c == call_path) {
            calls.push(call_path.to_string());
        }
    }

    /// One warning per site and cause.
    pub fn into_warnings(self) -> Vec<Warning> {
        self.groups
            .into_iter()
            .map(|((location, kind, _), (message, calls))| {
                let others = &calls[1..];
                let message = if others.is_empty() {
                    message
                } else {
                    let mut named: Vec<String> = others
                        .iter()
                        .take(CALLS_NAMED)
                        .map(|c| format!("`{c}`"))
                        .collect();
                    if others.len() > CALLS_NAMED {
                        named.push("…".to_string());
                    }
                    format!(
                        "{message} (likewise in {} other call{}: {})",
                        others.len(),
                        if others.len() == 1 { "" } else { "s" },
                        named.join(", ")
                    )
                };
                Warning {
                    location,
                    kind,
                    message,
                }
            })
            .collect()
    }
}

/// The message with the call it was evaluated for taken out: every name that starts with
/// the call path or a part of it (`wf.sub.task`, `wf.sub`, `wf`), as inputs-file keys do, so
/// an input missing at the same place of each run is one cause.
fn cause_of(message: &str, call_path: &str) -> String {
    let names: Vec<&str> = call_path.split('.').collect();
    let mut cause = message.to_string();
    for length in (1..=names.len()).rev() {
        let prefix = names[..length].join(".");
        cause = cause.replace(&format!("`{prefix}"), "`<call>");
    }
    cause
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warning(message: &str) -> Warning {
        Warning {
            location: Location {
                file: "t.wdl".into(),
                line: 9,
            },
            kind: WarningKind::Unresolved,
            message: message.into(),
        }
    }

    #[test]
    fn the_same_cause_from_two_runs_is_one_warning() {
        let mut warnings = SiteWarnings::default();
        warnings.add(
            warning("cannot resolve `d` in `A.x.t`: `d` has no default; give `A.d`"),
            "A.x.t",
        );
        warnings.add(
            warning("cannot resolve `d` in `B.t`: `d` has no default; give `B.d`"),
            "B.t",
        );
        warnings.add(warning("cannot resolve `d` in `B.t`: another cause"), "B.t");
        // An input of a sub-workflow nobody binds: its key starts with a part of the path.
        warnings.add(
            warning("cannot resolve `d` in `C.sub.t`: `d` has no default; give `C.sub.d`"),
            "C.sub.t",
        );
        let merged = warnings.into_warnings();
        let messages: Vec<&str> = merged.iter().map(|w| w.message.as_str()).collect();
        assert_eq!(
            messages,
            vec![
                "cannot resolve `d` in `A.x.t`: `d` has no default; give `A.d` (likewise in 2 other calls: `B.t`, `C.sub.t`)",
                "cannot resolve `d` in `B.t`: another cause",
            ]
        );
    }
}
