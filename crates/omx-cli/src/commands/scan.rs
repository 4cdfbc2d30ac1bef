//! `omx-ecr-helper scan`: the container images a workflow uses, as a pull manifest.

use omx_core::excerpt::printable;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use omx_workflow::{scan_path, Note, ScanReport, Skipped, Warning, WdlInputs};
use serde::Serialize;

use crate::args::read_input_file;
use crate::exit::{Outcome, UnusableInput};
use crate::table;

/// Find the container images of a Nextflow, WDL or CWL workflow.
///
/// Images a workflow only computes when it runs (`"${task.ext.image}"`, a WDL input with no
/// default) are listed as warnings with their file and line, and the exit code is 1; give WDL
/// values with --inputs, or add the images to the manifest by hand. A Nextflow parameter's
/// default (`params.image = '...'`) is listed, with a note that a run can override it. Every
/// docker, container and dockerPull directive gives an image, a skipped value or a warning.
#[derive(Args, Debug)]
pub struct ScanArgs {
    /// A workflow source file, or a directory to walk for them: *.nf, *.config, *.wdl, *.cwl,
    /// and YAML or JSON files with `cwlVersion`. Snakemake files (Snakefile, *.smk) are read
    /// only to list their images as skipped: HealthOmics does not run Snakemake.
    pub path: PathBuf,

    /// Output format.
    #[arg(long, value_enum, default_value_t = ScanFormat::Manifest)]
    pub format: ScanFormat,

    /// A WDL inputs JSON file whose values replace defaults, e.g.
    /// {"wf.docker": "ubuntu:22.04", "wf.task.docker": "..."}; a struct input is a JSON object,
    /// e.g. {"wf.task.runtime_attr_override": {"docker": "..."}}.
    #[arg(long, value_name = "FILE")]
    pub inputs: Option<PathBuf>,

    /// Write to FILE (e.g. container_image_manifest.json) instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanFormat {
    /// The pull manifest, {"manifest": ["image", ...]}, ready for `plan` and `pull`;
    /// warnings go to standard error, with how many values were skipped and how many notes
    /// the table has.
    Manifest,
    /// An aligned table of images and where each is written, then skipped values, notes
    /// (a parameter default a run can override, a profile's container) and the warnings
    /// by file.
    Table,
    /// One JSON object: the manifest, every image's locations, warnings, skipped values and
    /// notes.
    Json,
}

pub fn run(args: ScanArgs) -> anyhow::Result<Outcome> {
    let inputs = match &args.inputs {
        Some(path) => {
            let text = read_input_file(path)?;
            let inputs = WdlInputs::parse(path, &text)
                .map_err(|e| UnusableInput(format!("{}: {e}", crate::args::shown_path(path))))?;
            Some(inputs)
        }
        None => None,
    };
    let report =
        scan_path(&args.path, inputs.as_ref()).map_err(|e| UnusableInput(e.to_string()))?;
    let output = match args.format {
        ScanFormat::Manifest => {
            for warning in &report.warnings {
                eprintln!("warning: {}", printable(&warning.to_string()));
            }
            if !report.notes.is_empty() {
                eprintln!(
                    "note: {} note(s) on the workflow, such as parameter defaults a run can \
                     override and profile-only containers (--format table lists them)",
                    report.notes.len()
                );
            }
            if !report.skipped.is_empty() {
                eprintln!(
                    "note: {} container value(s) skipped, for Singularity only or in a \
                     Snakemake workflow (--format table lists them)",
                    report.skipped.len()
                );
            }
            render_manifest(&report)?
        }
        ScanFormat::Table => render_table(&report),
        ScanFormat::Json => render_json(&report)?,
    };
    match &args.output {
        Some(path) => std::fs::write(path, output)
            .with_context(|| format!("cannot write {}", crate::args::shown_path(path)))?,
        None => crate::output::write_stdout(&output)?,
    }
    Ok(if report.is_complete() {
        Outcome::Success
    } else {
        Outcome::PartialFailure
    })
}

pub(crate) fn render_manifest(report: &ScanReport) -> anyhow::Result<String> {
    let manifest = serde_json::json!({ "manifest": report.manifest() });
    Ok(format!("{}\n", serde_json::to_string_pretty(&manifest)?))
}

/// One image and every place it is written.
#[derive(Serialize)]
struct LocatedImage<'a> {
    image: &'a str,
    locations: Vec<String>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    manifest: Vec<String>,
    images: Vec<LocatedImage<'a>>,
    warnings: &'a [Warning],
    skipped: &'a [Skipped],
    notes: &'a [Note],
}

fn render_json(report: &ScanReport) -> anyhow::Result<String> {
    let mut images: Vec<LocatedImage> = Vec::new();
    for finding in &report.findings {
        let location = finding.location.to_string();
        match images.last_mut() {
            Some(last) if last.image == finding.image => last.locations.push(location),
            _ => images.push(LocatedImage {
                image: &finding.image,
                locations: vec![location],
            }),
        }
    }
    let json = JsonReport {
        manifest: report.manifest(),
        images,
        warnings: &report.warnings,
        skipped: &report.skipped,
        notes: &report.notes,
    };
    Ok(format!("{}\n", serde_json::to_string_pretty(&json)?))
}

fn render_table(report: &ScanReport) -> String {
    let rows: Vec<Vec<String>> = report
        .findings
        .iter()
        .map(|f| vec![f.image.clone(), f.location.to_string()])
        .collect();
    let mut out = table::render(&["IMAGE", "FOUND AT"], &rows);
    if !report.skipped.is_empty() {
        out.push('\n');
        for skipped in &report.skipped {
            out.push_str(&printable(&format!(
                "skipped: {}: {} is {}\n",
                skipped.location, skipped.value, skipped.reason
            )));
        }
    }
    if !report.notes.is_empty() {
        out.push('\n');
        for note in &report.notes {
            out.push_str(&printable(&format!("note: {note}\n")));
        }
    }
    out.push_str(&warnings_by_file(&report.warnings));
    let images = report.manifest().len();
    out.push_str(&format!(
        "\n{images} image{} found, {} warning{}\n",
        plural(images),
        report.warnings.len(),
        plural(report.warnings.len())
    ));
    out
}

/// The warnings under one heading per file, each as `line: message`, files in path order.
fn warnings_by_file(warnings: &[Warning]) -> String {
    let mut out = String::new();
    let mut current_file = None;
    for warning in warnings {
        let file = &warning.location.file;
        if current_file != Some(file) {
            out.push_str(&format!("\nwarnings in {}:\n", file.display()));
            current_file = Some(file);
        }
        let line = match warning.location.line {
            0 => "(whole file)".to_string(),
            line => line.to_string(),
        };
        out.push_str(&format!("  {line}: {}\n", warning.message));
    }
    // A workflow's text cannot move the cursor or recolour a terminal.
    printable(&out).into_owned()
}

fn plural(count: usize) -> &'static str {
    if count == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omx_workflow::{Finding, Location, WarningKind};

    fn report() -> ScanReport {
        let at = |file: &str, line| Location {
            file: file.into(),
            line,
        };
        ScanReport {
            findings: vec![
                Finding {
                    image: "quay.io/biocontainers/x:1".into(),
                    location: at("a/main.nf", 8),
                    process: None,
                },
                Finding {
                    image: "quay.io/biocontainers/x:1".into(),
                    location: at("b/main.nf", 3),
                    process: None,
                },
                Finding {
                    image: "ubuntu:22.04".into(),
                    location: at("t.wdl", 12),
                    process: None,
                },
            ],
            warnings: vec![Warning {
                location: at("c/main.nf", 4),
                kind: WarningKind::Unresolved,
                message: "cannot resolve the container image `params.x`".into(),
            }],
            skipped: vec![Skipped {
                value: "https://depot/x:1".into(),
                location: at("a/main.nf", 7),
                reason: "a URL for Singularity or Apptainer, not a registry image".into(),
            }],
            ..ScanReport::default()
        }
    }

    #[test]
    fn manifest_is_the_pull_manifest_shape() {
        let text = render_manifest(&report()).unwrap();
        assert_eq!(
            text,
            "{\n  \"manifest\": [\n    \"quay.io/biocontainers/x:1\",\n    \"ubuntu:22.04\"\n  ]\n}\n"
        );
        let entries = omx_core::manifest_file::parse_pull_manifest(&text).unwrap();
        assert_eq!(entries.entries.len(), 2);
    }

    #[test]
    fn json_groups_locations_by_image() {
        let json: serde_json::Value =
            serde_json::from_str(&render_json(&report()).unwrap()).unwrap();
        assert_eq!(
            json["images"][0]["locations"],
            serde_json::json!(["a/main.nf:8", "b/main.nf:3"])
        );
        assert_eq!(json["warnings"][0]["location"]["line"], 4);
        assert_eq!(json["warnings"][0]["kind"], "unresolved");
        assert_eq!(json["skipped"][0]["value"], "https://depot/x:1");
    }

    #[test]
    fn table_lists_images_skipped_values_and_warnings() {
        assert_eq!(
            render_table(&report()),
            "IMAGE                      FOUND AT\n\
             quay.io/biocontainers/x:1  a/main.nf:8\n\
             quay.io/biocontainers/x:1  b/main.nf:3\n\
             ubuntu:22.04               t.wdl:12\n\
             \n\
             skipped: a/main.nf:7: https://depot/x:1 is a URL for Singularity or Apptainer, not a registry image\n\
             \n\
             warnings in c/main.nf:\n\
             \x20 4: cannot resolve the container image `params.x`\n\
             \n\
             2 images found, 1 warning\n"
        );
    }

    #[test]
    fn warnings_are_grouped_by_file_and_control_characters_escaped() {
        let warning = |file: &str, line, message: &str| Warning {
            location: Location {
                file: file.into(),
                line,
            },
            kind: WarningKind::Unresolved,
            message: message.into(),
        };
        let warnings = [
            warning("a.wdl", 0, "not valid"),
            warning("a.wdl", 9, "cannot resolve `x`"),
            warning("b/main.nf", 4, "cannot resolve `\u{1b}[31mred`"),
        ];
        assert_eq!(
            warnings_by_file(&warnings),
            "\nwarnings in a.wdl:\n  (whole file): not valid\n  9: cannot resolve `x`\n\
             \nwarnings in b/main.nf:\n  4: cannot resolve `\\u{1b}[31mred`\n"
        );
    }
}
