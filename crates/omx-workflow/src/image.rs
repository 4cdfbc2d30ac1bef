//! From what a container expression evaluates to, to findings, warnings and skipped values.

use omx_core::excerpt::excerpt;
use omx_core::workflow_map::ProcessSelector;
use omx_core::Reference;

use crate::expr::{Candidate, Value};
use crate::{Finding, Location, ScanReport, Skipped, Warning, WarningKind};

/// WDL 1.1's container value for "any image the engine likes".
const ANY_CONTAINER: &str = "*";

/// Where an image is declared: the container directive or attribute, as written.
pub(crate) struct ContainerSite<'a> {
    pub location: Location,
    /// The expression's source text, quoted in warnings (an excerpt when it is long, such as
    /// a whole closure).
    pub expression: &'a str,
    /// Extra words for warnings, such as the WDL call the value was evaluated for.
    pub context: &'a str,
    /// A registry host put in front of names that have none (Nextflow's `docker.registry`).
    pub default_registry: Option<&'a str>,
    /// The Nextflow processes the container is set for; `None` outside Nextflow.
    pub process: Option<ProcessSelector>,
}

impl ContainerSite<'_> {
    /// Records every candidate of `value` in `report`.
    pub fn record(&self, value: Value, report: &mut ScanReport) {
        report.answered_sites.insert(self.location.clone());
        let candidates = match value {
            Value::Candidates(candidates) if !candidates.is_empty() => candidates,
            // Undefined, or an empty list (`container: []`): no image either way.
            _ => {
                report.warnings.push(Warning {
                    location: self.location.clone(),
                    kind: WarningKind::Unresolved,
                    message: format!(
                        "the container `{}`{} has no value",
                        excerpt(self.expression),
                        self.context
                    ),
                });
                return;
            }
        };
        for candidate in candidates {
            match candidate {
                Candidate::Known { text, location } => self.record_text(&text, location, report),
                Candidate::Record(_) => report.warnings.push(Warning {
                    location: self.location.clone(),
                    kind: WarningKind::InvalidImage,
                    message: format!(
                        "the container `{}`{} is a struct, not a string",
                        excerpt(self.expression),
                        self.context
                    ),
                }),
                Candidate::Unknown { reason } => report.warnings.push(Warning {
                    location: self.location.clone(),
                    kind: WarningKind::Unresolved,
                    message: format!(
                        "cannot resolve the container image `{}`{}: {reason}",
                        excerpt(self.expression),
                        self.context
                    ),
                }),
            }
        }
    }

    fn record_text(&self, text: &str, location: Location, report: &mut ScanReport) {
        let text = text.trim();
        let text = text.strip_prefix("docker://").unwrap_or(text);
        if text == ANY_CONTAINER {
            report.warnings.push(Warning {
                location,
                kind: WarningKind::Unresolved,
                message: format!(
                    "`*`{} lets the engine choose any container: it names no image, and \
                     HealthOmics needs one; give the task an image",
                    self.context
                ),
            });
            return;
        }
        if let Some(reason) = not_a_registry_image(text) {
            report.skipped.push(Skipped {
                value: text.to_string(),
                location,
                reason: reason.to_string(),
            });
            return;
        }
        let image = match self.default_registry {
            Some(registry) => with_default_registry(text, registry),
            None => text.to_string(),
        };
        match Reference::parse(&image) {
            Ok(_) => report.findings.push(Finding {
                image,
                location,
                process: self.process.clone(),
            }),
            Err(error) => report.warnings.push(Warning {
                location,
                kind: WarningKind::InvalidImage,
                message: format!("`{image}`{} is not a valid image: {error}", self.context),
            }),
        }
    }
}

/// Why `text` names no registry image, if it does not: Singularity and Apptainer take URLs
/// (`https://depot.galaxyproject.org/singularity/...`, `oras://`, `library://`) and image files.
fn not_a_registry_image(text: &str) -> Option<&'static str> {
    if text.contains("://") {
        return Some("a URL for Singularity or Apptainer, not a registry image");
    }
    let is_file = text.starts_with('/')
        || text.starts_with("./")
        || text.starts_with("../")
        || text.ends_with(".sif")
        || text.ends_with(".img");
    is_file.then_some("an image file for Singularity or Apptainer, not a registry image")
}

/// Nextflow's rule for `docker.registry`: the registry goes in front unless the name's first
/// `/`-separated part already names a host (contains `.` or `:`).
pub(crate) fn with_default_registry(image: &str, registry: &str) -> String {
    let names_a_host = image
        .split_once('/')
        .is_some_and(|(first, _)| first.contains('.') || first.contains(':'));
    let registry = registry.trim().trim_end_matches('/');
    if names_a_host || registry.is_empty() {
        image.to_string()
    } else {
        format!("{registry}/{image}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_registry_follows_nextflow() {
        assert_eq!(
            with_default_registry("biocontainers/x:1", "quay.io"),
            "quay.io/biocontainers/x:1"
        );
        assert_eq!(
            with_default_registry("ubuntu:22.04", "quay.io/"),
            "quay.io/ubuntu:22.04"
        );
        assert_eq!(
            with_default_registry("community.wave.seqera.io/library/x:1", "quay.io"),
            "community.wave.seqera.io/library/x:1"
        );
        assert_eq!(
            with_default_registry("localhost:5000/x", "quay.io"),
            "localhost:5000/x"
        );
    }

    #[test]
    fn an_empty_list_is_a_warning_not_nothing() {
        let site = ContainerSite {
            location: Location {
                file: "t.wdl".into(),
                line: 4,
            },
            expression: "[]",
            context: "",
            default_registry: None,
            process: None,
        };
        let mut report = ScanReport::default();
        site.record(Value::Candidates(Vec::new()), &mut report);
        assert_eq!(report.warnings.len(), 1);
        assert!(report.warnings[0].message.contains("has no value"));
    }

    #[test]
    fn singularity_values_are_not_registry_images() {
        assert!(not_a_registry_image("https://depot.galaxyproject.org/singularity/x:1").is_some());
        assert!(not_a_registry_image("oras://community.wave.seqera.io/x:1").is_some());
        assert!(not_a_registry_image("/shared/images/x.sif").is_some());
        assert!(not_a_registry_image("quay.io/biocontainers/x:1").is_none());
    }

    #[test]
    fn record_sorts_candidates_into_findings_warnings_and_skipped() {
        let site = ContainerSite {
            location: Location {
                file: "m.nf".into(),
                line: 3,
            },
            expression: "\"${ x }\"",
            context: "",
            default_registry: Some("quay.io"),
            process: None,
        };
        let at = |line| Location {
            file: "m.nf".into(),
            line,
        };
        let value = Value::Candidates(vec![
            Candidate::Known {
                text: "https://depot/x:1".into(),
                location: at(4),
            },
            Candidate::Known {
                text: "docker://biocontainers/x:1".into(),
                location: at(5),
            },
            Candidate::Known {
                text: "Bad Image".into(),
                location: at(6),
            },
            Candidate::Unknown {
                reason: "`x` is unknown".into(),
            },
        ]);
        let mut report = ScanReport::default();
        site.record(value, &mut report);
        assert_eq!(
            report.findings,
            vec![Finding {
                image: "quay.io/biocontainers/x:1".into(),
                location: at(5),
                process: None,
            }]
        );
        assert_eq!(report.skipped.len(), 1);
        assert_eq!(report.skipped[0].location, at(4));
        let kinds: Vec<(WarningKind, usize)> = report
            .warnings
            .iter()
            .map(|w| (w.kind, w.location.line))
            .collect();
        assert_eq!(
            kinds,
            vec![(WarningKind::InvalidImage, 6), (WarningKind::Unresolved, 3)]
        );
    }
}
