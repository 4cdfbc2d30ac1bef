//! `omx-ecr-helper prepare`: one command from a workflow folder to ready. It runs what `scan`,
//! `lock`, `pull`, `verify` and `map` do, in that order, on what the one before found, and
//! writes their results into one folder with a report a person reads.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use omx_core::lock::{LockReport, LockStatus};
use omx_core::pull_plan::TargetRegistry;
use omx_core::registry_map::OutputMap;
use omx_core::report::ImageStatus;
use omx_core::workflow_map::{private_uris, rewrite_wdl_inputs, ImageLookup};
use omx_puller::{CheckStatus, Verifier, VerifyReport};
use omx_workflow::{scan_path, ScanReport, WdlInputs};

use crate::args::PullRunArgs;
use crate::args::{read_input_file, shown_path, PullManifestArgs};
use crate::exit::{Outcome, UnusableInput};
use crate::render::verify_report::FixCommands;
use crate::steps::pull::{PullRun, PullSession};

/// Take a workflow from its folder to ready for HealthOmics, in one command.
///
/// It scans the workflow for its container images (as `scan` does), pins each tag to the digest
/// it points at upstream (as `lock` does; --no-lock keeps tags), brings exactly those images into
/// the private registry (as `pull` does: pull-through cache where a rule serves the upstream, a
/// copy otherwise), checks each is ready (as `verify` does), and writes into --out-dir:
///
///   container_image_manifest.json  the pull manifest the scan found
///   container_image_manifest.lock.json
///                                  the same, every image pinned (name:tag@sha256:...)
///   lock-report.json               per image: tag, digest, media type, platforms, status
///   container-registry-map.json    the HealthOmics containerRegistryMap of the images in place,
///                                  for `aws omics create-workflow --container-registry-map`
///   nextflow.config                (Nextflow) each process's private container, for
///                                  `nextflow run ... -c nextflow.config` outside HealthOmics
///   inputs.json                    (WDL with --inputs) the inputs with private URIs
///   private-images.json            (WDL without --inputs) every image's private URI
///   prepare-report.md              what was found, done and checked, and what to fix
///
/// With --dry-run nothing in the registry or AWS changes: the images are planned and checked,
/// not brought over or verified, and the files are written as the real run would write them.
/// Exit 0: every image is ready; 1: some image failed, a check failed or the scan could not
/// resolve a container; 2: the workflow or an option cannot be used.
// Verbatim: the list of files keeps its columns.
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct PrepareArgs {
    /// The workflow: a directory to walk (a Nextflow pipeline, WDL or CWL repository) or one
    /// workflow file.
    pub workflow: PathBuf,

    /// The folder the results are written to (created when missing; files of the same names in
    /// it are replaced).
    #[arg(long, value_name = "DIR", default_value = "omx-prepare")]
    pub out_dir: PathBuf,

    /// A WDL inputs JSON file: its values replace defaults when scanning, and a copy naming the
    /// private images is written as inputs.json.
    #[arg(long, value_name = "FILE")]
    pub inputs: Option<PathBuf>,

    /// Where images go: `ecr` (the account and region of the AWS credential chain),
    /// `ecr://ACCOUNT/REGION`, or the host[:port] of any OCI registry.
    #[arg(long, default_value = "ecr", value_name = "REGISTRY",
          value_parser = crate::exit::echoless(|text: &str| text.parse::<TargetRegistry>()))]
    pub registry: TargetRegistry,

    /// A JSON file of namespace rules that extend or override the built-in table.
    #[arg(long, value_name = "FILE")]
    pub namespaces: Option<PathBuf>,

    /// Keep the workflow's tags: pull, verify and map the scanned manifest as it is, without
    /// pinning each image to its digest first.
    #[arg(long)]
    pub no_lock: bool,

    #[command(flatten)]
    pub run: PullRunArgs,
}

const MANIFEST_FILE: &str = "container_image_manifest.json";
const LOCKED_MANIFEST_FILE: &str = "container_image_manifest.lock.json";
const LOCK_REPORT_FILE: &str = "lock-report.json";
const REGISTRY_MAP_FILE: &str = "container-registry-map.json";
const NEXTFLOW_FILE: &str = "nextflow.config";
const WDL_INPUTS_FILE: &str = "inputs.json";
const PRIVATE_IMAGES_FILE: &str = "private-images.json";
const REPORT_FILE: &str = "prepare-report.md";

impl PrepareArgs {
    /// The manifest `file` of --out-dir as `pull`, `verify` and `map` take it, with its text when
    /// this run made it.
    fn manifest_args(&self, file: &str, made: Option<String>) -> PullManifestArgs {
        PullManifestArgs {
            manifest: Some(self.out_dir.join(file)),
            single: None,
            registry: self.registry.clone(),
            namespaces: self.namespaces.clone(),
            made,
        }
    }
}

pub async fn run(args: PrepareArgs) -> anyhow::Result<Outcome> {
    let inputs = match &args.inputs {
        Some(path) => Some(read_wdl_inputs(path)?),
        None => None,
    };
    let scan = scan_path(&args.workflow, inputs.as_ref().map(|(inputs, _)| inputs))
        .map_err(|e| UnusableInput(e.to_string()))?;
    if scan.findings.is_empty() {
        let mut message = format!(
            "{}: no container image found to prepare",
            shown_path(&args.workflow)
        );
        if let Some(warning) = scan.warnings.first() {
            message.push_str(&format!(
                " ({} container(s) could not be resolved, e.g. {})",
                scan.warnings.len(),
                omx_core::excerpt::printable(&warning.to_string())
            ));
        }
        return Err(UnusableInput(message).into());
    }
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create {}", shown_path(&args.out_dir)))?;
    let mut files = Files::new(&args.out_dir);

    let manifest_text = crate::scan::render_manifest(&scan)?;
    files.write(
        MANIFEST_FILE,
        &manifest_text,
        format!("the pull manifest: {} image(s)", scan.manifest().len()),
    )?;
    let mut input = args.manifest_args(MANIFEST_FILE, Some(manifest_text));
    // One client from lock to pull: what locking read (an index, by digest) is not pulled again.
    let session = PullSession::open(&input, &args.run).await?;
    let (locked, session) = if args.no_lock {
        (None, session)
    } else {
        let client = session.client.clone();
        let report = crate::steps::lock::resolve_with(&input, client, args.run.jobs, false).await?;
        let locked_text = report.locked_manifest();
        files.write(
            LOCKED_MANIFEST_FILE,
            &locked_text,
            format!(
                "the pull manifest with every image pinned: {} of {} locked",
                report
                    .entries
                    .iter()
                    .filter(|e| e.status != LockStatus::Failed)
                    .count(),
                report.entries.len()
            ),
        )?;
        files.write(
            LOCK_REPORT_FILE,
            &json_text(&report)?,
            "per image: tag, digest, media type, platforms, status".to_string(),
        )?;
        // From here on the images are the pinned ones.
        input = args.manifest_args(LOCKED_MANIFEST_FILE, Some(locked_text));
        (Some(report), session.replan(&input)?)
    };

    let pulled = session.run(&args.run).await?;
    let verified = if args.run.dry_run {
        None
    } else {
        // The images just brought over, checked on the run's own target and client: no second
        // resolution of the target (STS, the region's secrets) and no second sign-in.
        let region = args.run.aws.region().map(str::to_string);
        let verifier = Verifier::new(
            pulled.client.clone(),
            pulled.target.clone(),
            pulled.table.clone(),
            region,
        );
        Some(verifier.verify(&pulled.plan).await)
    };

    let map = OutputMap::from_run(&pulled.plan, &pulled.report, &pulled.table, &pulled.access);
    files.write(
        REGISTRY_MAP_FILE,
        &json_text(&map.container_registry_map)?,
        format!(
            "the containerRegistryMap: {} registry mapping(s), {} image mapping(s)",
            map.container_registry_map.registry_mappings.len(),
            map.container_registry_map.image_mappings.len()
        ),
    )?;
    let lookup = ImageLookup::new(&pulled.plan, &pulled.table);
    let mut unplaced = Vec::new();
    if scan
        .findings
        .iter()
        .any(|f| crate::steps::map::is_nextflow_file(&f.location.file))
    {
        let config = crate::steps::map::nextflow_config(&scan, &lookup);
        unplaced = config
            .unplaced
            .iter()
            .map(|u| format!("{} ({}): {}", u.image, u.location, u.reason))
            .collect();
        files.write(
            NEXTFLOW_FILE,
            &config.render(),
            format!(
                "{} process container setting(s), for `nextflow run ... -c {NEXTFLOW_FILE}` \
                 outside HealthOmics",
                config.settings.len()
            ),
        )?;
    }
    if scan.findings.iter().any(|f| is_wdl(&f.location.file)) {
        match &inputs {
            Some((_, value)) => {
                let (rewritten, rewrites) = rewrite_wdl_inputs(value, &lookup);
                files.write(
                    WDL_INPUTS_FILE,
                    &json_text(&rewritten)?,
                    format!(
                        "the WDL inputs, {} value(s) naming private images",
                        rewrites.len()
                    ),
                )?;
            }
            None => files.write(
                PRIVATE_IMAGES_FILE,
                &json_text(&private_uris(&pulled.plan))?,
                "every image's private URI, for WDL inputs that name images".to_string(),
            )?,
        }
    }

    let report = Report {
        args: &args,
        scan: &scan,
        locked: locked.as_ref(),
        pulled: &pulled,
        verified: verified.as_ref(),
        unplaced: &unplaced,
        files: &files.written,
    };
    let (text, summary, ready) = (report.render(), report.summary(), report.ready());
    files.write(REPORT_FILE, &text, "this report".to_string())?;
    crate::output::write_stdout(&summary)?;
    Ok(if ready {
        Outcome::Success
    } else {
        Outcome::PartialFailure
    })
}

fn read_wdl_inputs(path: &Path) -> anyhow::Result<(WdlInputs, serde_json::Value)> {
    let text = read_input_file(path)?;
    let inputs = WdlInputs::parse(path, &text)
        .map_err(|e| UnusableInput(format!("{}: {e}", shown_path(path))))?;
    let value = serde_json::from_str(&text)
        .map_err(|e| UnusableInput(format!("{}: not valid JSON: {e}", shown_path(path))))?;
    Ok((inputs, value))
}

fn is_wdl(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "wdl")
}

fn json_text(value: &impl serde::Serialize) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(value)? + "\n")
}

/// The files written so far, each with what it holds.
struct Files<'a> {
    dir: &'a Path,
    written: Vec<(String, String)>,
}

impl<'a> Files<'a> {
    fn new(dir: &'a Path) -> Files<'a> {
        Files {
            dir,
            written: Vec::new(),
        }
    }

    fn write(&mut self, name: &str, text: &str, holds: String) -> anyhow::Result<()> {
        let path = self.dir.join(name);
        std::fs::write(&path, text)
            .with_context(|| format!("cannot write {}", shown_path(&path)))?;
        self.written.push((name.to_string(), holds));
        Ok(())
    }
}

/// What `prepare` found, did and checked.
struct Report<'a> {
    args: &'a PrepareArgs,
    scan: &'a ScanReport,
    /// `None` with --no-lock.
    locked: Option<&'a LockReport>,
    pulled: &'a PullRun,
    /// `None` in a dry run.
    verified: Option<&'a VerifyReport>,
    /// Nextflow containers the configuration could not set.
    unplaced: &'a [String],
    files: &'a [(String, String)],
}

impl Report<'_> {
    /// Every image is in place and passed every check, and the scan and the configuration left
    /// nothing out. A dry run is ready when nothing failed and the scan was complete.
    fn ready(&self) -> bool {
        let locked = self.locked.is_none_or(LockReport::all_ok);
        let pulled = self.pulled.report.all_ok();
        let verified = self.verified.is_none_or(VerifyReport::all_passed);
        locked && pulled && verified && self.scan.is_complete() && self.unplaced.is_empty()
    }

    fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = Vec::new();
        for warning in &self.scan.warnings {
            problems.push(format!("scan: {warning}"));
        }
        for entry in self.locked.iter().flat_map(|report| &report.entries) {
            if entry.status == LockStatus::Failed {
                problems.push(format!("lock: {}: {}", entry.input, entry.reason));
            }
        }
        for error in &self.pulled.report.errors {
            problems.push(format!("manifest: {error}"));
        }
        for image in &self.pulled.report.images {
            if image.status == ImageStatus::Failed {
                problems.push(format!("pull: {}: {}", image.source, image.message));
            }
        }
        if let Some(verified) = self.verified {
            for image in &verified.images {
                for check in image
                    .checks
                    .iter()
                    .filter(|c| c.status == CheckStatus::Fail)
                {
                    problems.push(format!(
                        "verify: {}: {}: {}",
                        image.target, check.kind, check.reason
                    ));
                }
            }
        }
        for unplaced in self.unplaced {
            problems.push(format!("nextflow config: {unplaced}"));
        }
        problems
            .into_iter()
            .map(|p| omx_core::excerpt::printable(&p).into_owned())
            .collect()
    }

    /// The few lines printed when the run ends.
    fn summary(&self) -> String {
        let report = &self.pulled.report;
        let count = |status| report.count(status);
        let mut out = format!(
            "{}: {} image(s): {} brought over, {} already there, {} failed{}\n",
            self.verdict(),
            report.images.len(),
            count(ImageStatus::Succeeded),
            count(ImageStatus::Skipped),
            count(ImageStatus::Failed),
            match count(ImageStatus::Planned) {
                0 => String::new(),
                planned => format!(", {planned} planned"),
            },
        );
        for problem in self.problems() {
            out.push_str(&format!("  {problem}\n"));
        }
        for (name, holds) in self.files {
            out.push_str(&format!(
                "wrote {}: {holds}\n",
                shown_path(&self.args.out_dir.join(name))
            ));
        }
        out.push_str(&format!(
            "wrote {}: this report\n",
            shown_path(&self.args.out_dir.join(REPORT_FILE))
        ));
        out
    }

    fn verdict(&self) -> &'static str {
        match (self.args.run.dry_run, self.ready()) {
            (true, true) => "dry run, nothing changed: ready to prepare",
            (true, false) => "dry run, nothing changed: NOT READY",
            (false, true) => "ready for HealthOmics",
            (false, false) => "NOT READY",
        }
    }

    fn render(&self) -> String {
        let workflow = shown_path(&self.args.workflow);
        let mut out = format!("# Prepared: {workflow}\n\n**{}**\n\n", self.verdict());
        let problems = self.problems();
        if !problems.is_empty() {
            out.push_str("## To fix\n\n");
            for problem in &problems {
                out.push_str(&format!("- {}\n", markdown_text(problem)));
            }
            out.push('\n');
        }
        out.push_str("## Images\n\n| image | how | private URI | digest | result | ready |\n|---|---|---|---|---|---|\n");
        for (image, report) in self
            .pulled
            .plan
            .images
            .iter()
            .zip(&self.pulled.report.images)
        {
            let ready = match self.verified {
                None => "not checked (dry run)".to_string(),
                Some(verified) => verified
                    .images
                    .iter()
                    .find(|v| v.target == image.target)
                    .map_or("-".to_string(), |v| {
                        if v.passed() { "yes" } else { "NO" }.to_string()
                    }),
            };
            // The workflow's spelling: the digest, pinned or not, has a column of its own.
            let spellings: Vec<&str> = image
                .aliases
                .iter()
                .map(|alias| omx_core::lock::unpinned_spelling(alias).unwrap_or(alias))
                .collect();
            let row = [
                spellings.join(", "),
                image.method.to_string(),
                image.target.clone(),
                report
                    .digest
                    .as_ref()
                    .map_or(String::new(), ToString::to_string),
                format!(
                    "{}: {}",
                    crate::render::image_report::status_word(report.status),
                    report.message
                ),
                ready,
            ];
            let cells: Vec<String> = row.iter().map(|cell| markdown_text(cell)).collect();
            out.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        out.push('\n');
        if let Some(verified) = self.verified {
            let manifest = match self.locked {
                Some(_) => LOCKED_MANIFEST_FILE,
                None => MANIFEST_FILE,
            };
            let fixes = FixCommands::for_input(
                &self.args.manifest_args(manifest, None),
                self.args.run.aws.profile(),
                self.args.run.aws.region(),
            );
            out.push_str("## Checks\n\n```\n");
            out.push_str(&crate::render::verify_report::render(verified, &fixes));
            out.push_str("```\n\n");
        }
        if !self.scan.notes.is_empty() || !self.scan.skipped.is_empty() {
            out.push_str("## Notes from the scan\n\n");
            for note in &self.scan.notes {
                out.push_str(&format!("- {}\n", markdown_text(&note.to_string())));
            }
            for skipped in &self.scan.skipped {
                out.push_str(&format!(
                    "- skipped {} at {}: {}\n",
                    markdown_text(&skipped.value),
                    skipped.location,
                    skipped.reason
                ));
            }
            out.push('\n');
        }
        out.push_str("## Files\n\n");
        for (name, holds) in self.files {
            out.push_str(&format!("- `{name}`: {holds}\n"));
        }
        out.push_str(&format!("- `{REPORT_FILE}`: this report\n\n"));
        out.push_str(&format!(
            "## Next\n\nCreate the workflow with the map, e.g.\n\n```sh\naws omics create-workflow \
             --name NAME --definition-zip fileb://workflow.zip \\\n  --container-registry-map \
             file://{}\n```\n",
            shown_path(&self.args.out_dir.join(REGISTRY_MAP_FILE))
        ));
        out
    }
}

/// `text` as one inert Markdown table cell or list item: control characters escaped, `|` and
/// line breaks unable to end the cell.
fn markdown_text(text: &str) -> String {
    omx_core::excerpt::printable(text)
        .replace('|', "\\|")
        .replace('\n', " ")
}
