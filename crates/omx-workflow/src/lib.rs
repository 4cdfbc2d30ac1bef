//! Finds the container images a workflow uses, for the pull manifest of omx-ecr-helper.
//!
//! Nextflow (`*.nf`, `*.config`), WDL (draft-2 to development) and CWL (YAML or JSON) sources
//! are read statically: nothing runs. Every image found carries the file and line where its
//! name is written. Images the sources only compute at run time (`"${task.ext.image}"`, a WDL
//! input with no default) are reported as [`Warning`]s with their location, never dropped, so
//! a user can add them to the manifest by hand or give the value with `--inputs`; a check
//! every scanned file goes through (`safety_net`) turns a directive a scanner passed over
//! into a warning too. Snakemake files are read only to list their images as [`Skipped`]:
//! HealthOmics does not run Snakemake. [`Note`]s tell what a user should know about an image
//! found (a parameter default, a profile-only container).
//!
//! The language scanners are pure functions of `(path, text)` ([`SourceFile`]);
//! [`collect_sources`] is the thin part that reads a directory tree.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use omx_core::workflow_map::ProcessSelector;
use serde::Serialize;

mod cwl;
mod expr;
mod image;
mod lexer;
mod nextflow;
mod safety_net;
mod snakemake;
mod walk;
mod wdl;

pub use walk::{collect_sources, detect_language, scan_path, Collected, ScanError};
pub use wdl::{InputsError, WdlInputs};

/// A line of a file. Paths are as the scanned path was given, joined with the file's place
/// under it (`pipeline/modules/local/foo/main.nf`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Location {
    pub file: PathBuf,
    /// 1-based; 0 when the problem concerns the whole file.
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file.display())
        } else {
            write!(f, "{}:{}", self.file.display(), self.line)
        }
    }
}

/// A container image the workflow uses, and where its name is written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Finding {
    /// The image as the container runtime will pull it, e.g. after Nextflow's `docker.registry`
    /// was put in front of a name without a registry host.
    pub image: String,
    pub location: Location,
    /// The Nextflow processes this container is set for (the `process NAME` it is a directive
    /// of, or a configuration's `withName:`/`withLabel:` selector or `process.container`);
    /// `None` for WDL and CWL, and for a Nextflow container outside any process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessSelector>,
}

/// What kind of problem a [`Warning`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    /// The image is computed from something only the run knows.
    Unresolved,
    /// The text found is not a valid image reference.
    InvalidImage,
    /// A file (or a file it refers to) could not be read or parsed, so its images are missing.
    Unreadable,
    /// A directive the scanner read past without listing an image or saying why: a scanner
    /// bug, caught by the check every scanned file goes through.
    Missed,
}

/// An image the scanner could not list, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Warning {
    pub location: Location,
    pub kind: WarningKind,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// A container value that is not put in the manifest: not a registry image (a Singularity
/// URL or image file, such as the branch nf-core modules take under Singularity), or the
/// image of a Snakemake rule (HealthOmics does not run Snakemake). Listed so nothing
/// disappears silently, but not a problem: HealthOmics runs never use it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Skipped {
    pub value: String,
    pub location: Location,
    pub reason: String,
}

/// Something a user should know about an image that was found: that a run can replace it
/// (a parameter's default), or that only one profile uses it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Note {
    pub location: Location,
    pub message: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Everything one scan found, each list sorted and without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScanReport {
    pub findings: Vec<Finding>,
    pub warnings: Vec<Warning>,
    pub skipped: Vec<Skipped>,
    pub notes: Vec<Note>,
    /// The directive sites that gave a finding, warning or skipped value; every directive of
    /// every scanned file must be among them (see `safety_net`).
    #[serde(skip)]
    pub answered_sites: BTreeSet<Location>,
}

impl ScanReport {
    /// The pull manifest entries: every image found, sorted, each once.
    pub fn manifest(&self) -> Vec<String> {
        let mut images: Vec<String> = self.findings.iter().map(|f| f.image.clone()).collect();
        images.sort();
        images.dedup();
        images
    }

    /// True when every container the sources name was resolved to a valid image.
    pub fn is_complete(&self) -> bool {
        self.warnings.is_empty()
    }

    pub(crate) fn merge(&mut self, other: ScanReport) {
        self.findings.extend(other.findings);
        self.warnings.extend(other.warnings);
        self.skipped.extend(other.skipped);
        self.notes.extend(other.notes);
        self.answered_sites.extend(other.answered_sites);
    }

    fn sort_and_dedup(&mut self) {
        self.findings.sort();
        self.findings.dedup();
        self.warnings.sort();
        self.warnings.dedup();
        self.skipped.sort();
        self.skipped.dedup();
        self.notes.sort();
        self.notes.dedup();
    }
}

/// The workflow languages the scanner reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// A Nextflow script (`.nf`).
    Nextflow,
    /// A Nextflow configuration file (`nextflow.config`, `conf/*.config`, included configs).
    NextflowConfig,
    Wdl,
    Cwl,
    /// A Snakemake workflow (`Snakefile`, `*.smk`), which HealthOmics does not run: read only
    /// to say so and list its images as skipped.
    Snakemake,
    /// A file a CWL document takes in with `$include` (as text) or `$import` (as YAML); not a
    /// document of its own.
    CwlFragment,
}

/// One source file's text, the language it is in, and its path (used for locations and to
/// find the files it refers to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
    pub language: Language,
}

/// Scans source files already read. Files refer to each other (WDL imports, Nextflow's
/// `includeConfig`, CWL `run:`) by paths relative to their own; a referenced file missing from
/// `sources` is a warning. `inputs` gives values for WDL inputs.
pub fn scan_sources(sources: &[SourceFile], inputs: Option<&WdlInputs>) -> ScanReport {
    let of = |languages: &[Language]| -> Vec<&SourceFile> {
        sources
            .iter()
            .filter(|s| languages.contains(&s.language))
            .collect()
    };
    let mut report = ScanReport::default();
    report.merge(nextflow::scan(&of(&[
        Language::Nextflow,
        Language::NextflowConfig,
    ])));
    report.merge(wdl::scan(&of(&[Language::Wdl]), inputs));
    let fragments = cwl::Fragments::new(&of(&[Language::Cwl, Language::CwlFragment]));
    for source in of(&[Language::Cwl]) {
        report.merge(cwl::scan(source, &fragments));
    }
    report.merge(snakemake::scan(&of(&[Language::Snakemake])));
    safety_net::warn_about_dropped_directives(sources, &mut report);
    report.sort_and_dedup();
    report
}

/// Files a source refers to by path, resolved against the source's own directory: WDL
/// imports, Nextflow `includeConfig` targets, CWL `run:` documents and the files CWL
/// `$import`s and `$include`s. URLs are left out.
pub fn referenced_files(source: &SourceFile) -> Vec<(PathBuf, Language)> {
    let relative: Vec<(String, Language)> = match source.language {
        Language::NextflowConfig => nextflow::included_configs(&source.text)
            .into_iter()
            .map(|(path, _)| (path, Language::NextflowConfig))
            .collect(),
        Language::Nextflow | Language::Snakemake => Vec::new(),
        Language::Wdl => wdl::imported_paths(&source.text)
            .into_iter()
            .map(|path| (path, Language::Wdl))
            .collect(),
        Language::Cwl | Language::CwlFragment => cwl::run_documents(&source.text)
            .into_iter()
            .map(|path| (path, Language::Cwl))
            .chain(
                cwl::fragment_paths(&source.text)
                    .into_iter()
                    .map(|path| (path, Language::CwlFragment)),
            )
            .collect(),
    };
    relative
        .into_iter()
        .filter(|(path, _)| !path.contains("://"))
        .map(|(path, language)| (resolve_relative(&source.path, &path), language))
        .collect()
}

/// `reference` read relative to the directory of `from`, with `.` and `..` folded away.
pub(crate) fn resolve_relative(from: &Path, reference: &str) -> PathBuf {
    let base = from.parent().unwrap_or(Path::new(""));
    normalize(&base.join(reference))
}

/// Folds `.` and `name/..` out of a path without touching the file system.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out: Vec<Component> = Vec::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(component),
            },
            other => out.push(other),
        }
    }
    out.iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_folds_dots_lexically() {
        assert_eq!(normalize(Path::new("a/./b/../c")), PathBuf::from("a/c"));
        assert_eq!(normalize(Path::new("a/../../c")), PathBuf::from("../c"));
        assert_eq!(normalize(Path::new("/../x")), PathBuf::from("/x"));
        assert_eq!(
            resolve_relative(Path::new("wf/main.wdl"), "../tasks/t.wdl"),
            PathBuf::from("tasks/t.wdl")
        );
    }

    #[test]
    fn location_display_omits_line_zero() {
        let whole = Location {
            file: "a.wdl".into(),
            line: 0,
        };
        assert_eq!(whole.to_string(), "a.wdl");
        let line = Location {
            file: "a.wdl".into(),
            line: 3,
        };
        assert_eq!(line.to_string(), "a.wdl:3");
    }
}
