//! Scans the fixture workflows under tests/fixtures and checks the exact manifest, where each
//! image was found, and every warning's location.

use std::path::{Path, PathBuf};

use omx_workflow::{scan_path, ScanReport, WarningKind, WdlInputs};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// `file:line` with the file relative to `root`.
fn at(root: &Path, location: &omx_workflow::Location) -> String {
    let file = location.file.strip_prefix(root).unwrap_or(&location.file);
    format!("{}:{}", file.display(), location.line)
}

/// A WDL inputs file of the fixtures, e.g. `wdl/inputs.json`.
fn inputs_file(name: &str) -> WdlInputs {
    let path = fixture(name);
    let text = std::fs::read_to_string(&path).unwrap();
    WdlInputs::parse(&path, &text).unwrap()
}

fn scan(name: &str, inputs: Option<&WdlInputs>) -> (PathBuf, ScanReport) {
    let root = fixture(name);
    let report = scan_path(&root, inputs).expect("the fixture scans");
    (root, report)
}

fn findings(root: &Path, report: &ScanReport) -> Vec<String> {
    report
        .findings
        .iter()
        .map(|f| format!("{} {}", f.image, at(root, &f.location)))
        .collect()
}

/// Each note as `file:line message`.
fn notes(root: &Path, report: &ScanReport) -> Vec<String> {
    report
        .notes
        .iter()
        .map(|n| format!("{} {}", at(root, &n.location), n.message))
        .collect()
}

fn warnings(root: &Path, report: &ScanReport) -> Vec<(String, WarningKind)> {
    report
        .warnings
        .iter()
        .map(|w| (at(root, &w.location), w.kind))
        .collect()
}

#[test]
fn nextflow_nf_core_style_pipeline() {
    let (root, report) = scan("nextflow", None);
    assert_eq!(
        report.manifest(),
        vec![
            "community.wave.seqera.io/library/fastqc:0.12.1--af7a5314d5015c29",
            "ghcr.io/example/index-tools:2.1",
            "nvcr.io/nvidia/clara/clara-parabricks:4.2.0-1",
            "quay.io/biocontainers/biocontainers:v1.2.0_cv1",
            "quay.io/biocontainers/foo:1.0--0",
            "quay.io/biocontainers/samtools:1.17--h00cdaf9_0",
            "quay.io/staphb/bwa:0.7.17",
        ]
    );
    let mut by_location = report.findings.clone();
    by_location.sort_by(|a, b| a.location.cmp(&b.location));
    let by_location = findings(
        &root,
        &ScanReport {
            findings: by_location,
            ..ScanReport::default()
        },
    );
    assert_eq!(
        by_location,
        vec![
            "quay.io/biocontainers/biocontainers:v1.2.0_cv1 conf/base.config:3",
            "quay.io/staphb/bwa:0.7.17 modules/local/align/main.nf:3",
            "ghcr.io/example/index-tools:2.1 modules/local/align/main.nf:16",
            "community.wave.seqera.io/library/fastqc:0.12.1--af7a5314d5015c29 modules/nf-core/fastqc/main.nf:8",
            "quay.io/biocontainers/samtools:1.17--h00cdaf9_0 modules/nf-core/samtools/sort/main.nf:8",
            "quay.io/biocontainers/foo:1.0--0 nextflow.config:14",
            "nvcr.io/nvidia/clara/clara-parabricks:4.2.0-1 nextflow.config:17",
        ]
    );
    assert_eq!(
        warnings(&root, &report),
        vec![
            ("conf/modules.config:7".to_string(), WarningKind::Unresolved),
            (
                "modules/local/custom/main.nf:4".to_string(),
                WarningKind::Unresolved
            ),
        ]
    );
    assert!(report.warnings[1].message.contains("params.custom_image"));
    let skipped: Vec<String> = report
        .skipped
        .iter()
        .map(|s| at(&root, &s.location))
        .collect();
    assert_eq!(
        skipped,
        vec![
            "modules/nf-core/fastqc/main.nf:7",
            "modules/nf-core/samtools/sort/main.nf:7"
        ]
    );
    assert!(!report.is_complete());
}

#[test]
fn wdl_1_0_defaults_bindings_imports_and_a_missing_input() {
    let (root, report) = scan("wdl", None);
    assert_eq!(
        report.manifest(),
        vec![
            "biocontainers/bwa:v0.7.17_cv1",
            "biocontainers/fastqc:v0.11.9_cv8",
            "ewels/multiqc:v1.14",
            "quay.io/biocontainers/samtools:1.17--h00cdaf9_0",
            "ubuntu:22.04",
        ]
    );
    assert_eq!(
        findings(&root, &report),
        vec![
            "biocontainers/bwa:v0.7.17_cv1 main.wdl:10",
            "biocontainers/fastqc:v0.11.9_cv8 tasks/qc.wdl:6",
            "ewels/multiqc:v1.14 tasks/qc.wdl:21",
            "quay.io/biocontainers/samtools:1.17--h00cdaf9_0 main.wdl:9",
            "ubuntu:22.04 main.wdl:72",
        ]
    );
    assert_eq!(
        warnings(&root, &report),
        vec![("main.wdl:30".to_string(), WarningKind::Unresolved)]
    );
    assert!(
        report.warnings[0]
            .message
            .contains("give `align_and_qc.index_ref.docker` in the inputs file"),
        "{}",
        report.warnings[0].message
    );
}

#[test]
fn wdl_inputs_file_overrides_defaults_and_fills_missing_inputs() {
    let inputs = inputs_file("wdl/inputs.json");
    let (root, report) = scan("wdl", Some(&inputs));
    assert_eq!(
        report.manifest(),
        vec![
            "biocontainers/bwa:v0.7.17_cv1",
            "ewels/multiqc:v1.14",
            "quay.io/biocontainers/bwa:0.7.17--he4a0461_11",
            "quay.io/biocontainers/fastqc:0.12.1--hdfd78af_0",
            "quay.io/biocontainers/samtools:1.17--h00cdaf9_0",
            "ubuntu:22.04",
        ]
    );
    let found = findings(&root, &report);
    assert!(found.contains(&"biocontainers/bwa:v0.7.17_cv1 inputs.json:3".to_string()));
    assert!(
        found.contains(&"quay.io/biocontainers/bwa:0.7.17--he4a0461_11 inputs.json:5".to_string())
    );
    assert!(found
        .contains(&"quay.io/biocontainers/fastqc:0.12.1--hdfd78af_0 inputs.json:4".to_string()));
    assert!(report.is_complete(), "{:?}", report.warnings);
}

#[test]
fn wdl_draft_2_declarations_and_dollar_placeholders() {
    let (root, report) = scan("wdl-draft2", None);
    assert_eq!(
        report.manifest(),
        vec!["alpine:3.18", "debian:bookworm-slim"]
    );
    assert_eq!(
        findings(&root, &report),
        vec![
            "alpine:3.18 hello.wdl:19",
            "debian:bookworm-slim hello.wdl:23"
        ]
    );
    assert_eq!(
        warnings(&root, &report),
        vec![("hello.wdl:11".to_string(), WarningKind::Unresolved)]
    );
    assert!(report.warnings[0]
        .message
        .contains("`greet.hello_again.docker_image`"));
}

#[test]
fn cwl_yaml_and_json_requirements_and_hints() {
    let (root, report) = scan("cwl", None);
    assert_eq!(
        report.manifest(),
        vec![
            "biocontainers/samtools:v1.9-4-deb_cv1",
            "debian:stable-slim",
            "quay.io/biocontainers/samtools:1.17--h00cdaf9_0",
        ]
    );
    assert_eq!(
        findings(&root, &report),
        vec![
            "biocontainers/samtools:v1.9-4-deb_cv1 sort.cwl:16",
            "debian:stable-slim count-lines.json:8",
            "quay.io/biocontainers/samtools:1.17--h00cdaf9_0 sort.cwl:8",
        ]
    );
    assert_eq!(
        warnings(&root, &report),
        vec![("pipeline.cwl:16".to_string(), WarningKind::Unresolved)]
    );
}

#[test]
fn a_single_file_brings_the_files_it_imports() {
    let root = fixture("wdl");
    let report = scan_path(&root.join("main.wdl"), None).unwrap();
    assert_eq!(report.manifest().len(), 5, "{:?}", report.manifest());
    assert!(report
        .findings
        .iter()
        .any(|f| f.location.file == root.join("tasks/qc.wdl")));
}

/// Issue #13, item 1: Nextflow reads only the launched pipeline's `nextflow.config` (and what
/// it includes), so a module folder with its own `nextflow.config` takes the pipeline's
/// `docker.registry`. Also: `conf/modules.config` overrides, and a config a profile includes.
#[test]
fn nextflow_module_level_configs_keep_the_pipeline_registry() {
    let (root, report) = scan("nextflow-module-configs", None);
    assert_eq!(
        findings(&root, &report),
        vec![
            "community.wave.seqera.io/library/preseq:3.2.0--arm64 conf/arm.config:4",
            "quay.io/biocontainers/preseq:3.2.0--hdcf5f25_6 modules/nf-core/preseq/lcextrap/main.nf:5",
            "quay.io/biocontainers/stringtie:2.2.1--hecb563c_2 conf/modules.config:4",
            "quay.io/biocontainers/stringtie:2.2.3--h43eeafb_0 modules/nf-core/stringtie/main.nf:4",
        ]
    );
    assert!(report.is_complete(), "{:?}", report.warnings);
    // Both are listed (the selector may not match every alias of the module), and the
    // override says what it replaces; a config included inside a profile says which.
    let notes = notes(&root, &report);
    assert_eq!(
        notes,
        vec![
            "conf/arm.config:4 the processes `withName: 'PRESEQ_LCEXTRAP'` selects run this \
             container instead of their own `container` directive (a config setting wins over it)",
            "conf/arm.config:4 this container is used only with `-profile arm`",
            "conf/modules.config:4 the processes `withName: 'STRINGTIE'` selects run this \
             container instead of their own `container` directive (a config setting wins over it)",
        ]
    );
}

/// Issue #13, item 2: `workflow run_x { call run_x }` calls the task `run_x`; its image was
/// dropped without a warning when the task and the workflow were keyed by name alone.
#[test]
fn wdl_task_named_like_its_workflow_is_scanned() {
    let (root, report) = scan("wdl-same-name", None);
    assert_eq!(findings(&root, &report), vec!["org/img:1 run_x.wdl:21"]);
    assert!(report.is_complete(), "{:?}", report.warnings);
}

/// Issue #13, item 3: object and struct literals, member access, `select_first` over an unset
/// optional override, and a version concatenated onto an image name.
#[test]
fn wdl_runtime_attr_structs_resolve_to_their_default_literal() {
    let (root, report) = scan("wdl-runtime-attr", None);
    assert_eq!(
        findings(&root, &report),
        vec![
            "us.gcr.io/broad-dsde-methods/gatk-sv/sv-pipeline:2024-01-01-v0.28.4 sv.wdl:29",
            "us.gcr.io/broad-gatk/gatk:4.5.0.0 sv.wdl:52",
        ]
    );
    // No docker member anywhere: select_first fails at run time, one warning at the site.
    assert_eq!(
        warnings(&root, &report),
        vec![("sv.wdl:68".to_string(), WarningKind::Unresolved)]
    );
    assert!(
        report.warnings[0].message.contains("has no value"),
        "{}",
        report.warnings[0].message
    );
}

#[test]
fn wdl_struct_override_from_the_inputs_file_wins_member_by_member() {
    let inputs = inputs_file("wdl-runtime-attr/override.json");
    let (root, report) = scan("wdl-runtime-attr", Some(&inputs));
    assert_eq!(
        findings(&root, &report),
        vec![
            "us.gcr.io/broad-gatk/gatk:4.5.0.0 sv.wdl:52",
            "us.gcr.io/my-mirror/sv-pipeline:fixed override.json:2",
        ]
    );
    assert_eq!(
        warnings(&root, &report),
        vec![("sv.wdl:68".to_string(), WarningKind::Unresolved)]
    );
}

/// Issue #13, item 6: a site evaluated for several calls and several workflow runs gives
/// one warning per cause, naming the other calls.
#[test]
fn wdl_one_warning_per_site_and_cause() {
    let (root, report) = scan("wdl-two-runs", None);
    assert!(report.findings.is_empty());
    assert_eq!(
        warnings(&root, &report),
        vec![("tasks.wdl:11".to_string(), WarningKind::Unresolved)]
    );
    assert_eq!(
        report.warnings[0].message,
        "cannot resolve the container image `sv_pipeline_docker` in `Batch.ShardA`: \
         `sv_pipeline_docker` has no default; give `Batch.sv_pipeline_docker` in the inputs \
         file (--inputs) (likewise in 2 other calls: `Batch.ShardB`, `SingleSample.Shard`)"
    );
}

/// Issue #13, item 4: Schema Salad's `$include` (a file's text) and `$import` (a YAML
/// document), resolved relative to the file that writes them, as cwltool does; a file that
/// is not there is a warning at the directive.
#[test]
fn cwl_include_and_import_resolve_relative_to_the_document() {
    let (root, report) = scan("cwl-include-import", None);
    assert_eq!(
        findings(&root, &report),
        vec![
            "biocontainers/bwa:v0.7.17_cv1 bwa-pull.yml:1",
            "quay.io/biocontainers/ivar:1.2.2--h089eab3_1 docker_container.txt:1",
            "quay.io/biocontainers/samtools:1.17--h00cdaf9_0 samtools-docker.yml:2",
        ]
    );
    assert_eq!(
        warnings(&root, &report),
        vec![
            ("missing.cwl:5".to_string(), WarningKind::Unreadable),
            ("missing.cwl:8".to_string(), WarningKind::Unreadable),
        ]
    );
    assert!(report.warnings[0].message.contains("no-such-file.txt"));
    assert!(report.warnings[1]
        .message
        .contains("no-such-requirement.yml"));
    // Also worth knowing: a SoftwareRequirement names packages, not an image.
    assert_eq!(
        notes(&root, &report),
        vec![
            "bwa_mem.cwl:7 SoftwareRequirement names software packages (bwa), not a container \
             image; HealthOmics runs only the image a DockerRequirement gives"
        ]
    );
}

/// Issue #13, item 5: `params` defaults from the pipeline's config (winning over the script's
/// own assignment) resolve a `container "${params.x}"`, with a note that a run can override
/// it; a profile's container, and the image a profile's parameter gives, are listed with
/// their profile.
#[test]
fn nextflow_params_defaults_resolve_with_a_note() {
    let (root, report) = scan("nextflow-params", None);
    assert_eq!(
        findings(&root, &report),
        vec![
            "biocontainers/samtools:1.17--h00cdaf9_0 nextflow.config:5",
            "ghcr.io/example/flat:2 nextflow.config:8",
            "nvcr.io/nvidia/clara/clara-parabricks:4.2.0-1 nextflow.config:13",
            "quay.io/example/tool:1.0 nextflow.config:3",
            "quay.io/example/tool:1.0-gpu nextflow.config:12",
            "quay.io/example/typed:3 main.nf:32",
            "ubuntu:22.04 main.nf:3",
        ]
    );
    let notes = notes(&root, &report);
    let config = root.join("nextflow.config");
    let main = root.join("main.nf");
    assert_eq!(
        notes,
        vec![
            "main.nf:6 `-profile gpu` sets a parameter this container uses; the image it gives \
             then is listed too"
                .to_string(),
            format!("main.nf:6 the image is the default of `params.my_image` ({}:3); a run can give another with --my_image", config.display()),
            format!("main.nf:10 the image is the default of `params.script_image` ({}:3); a run can give another with --script_image", main.display()),
            format!("main.nf:14 the image is the default of `params.versioned` ({}:5); a run can give another with --versioned", config.display()),
            format!("main.nf:26 the image is the default of `params.flat_image` ({}:8); a run can give another with --flat_image", config.display()),
            format!("main.nf:36 the image is the default of `params.typed_image` ({}:32); a run can give another with --typed_image", main.display()),
            "nextflow.config:13 this container is used only with `-profile gpu`".to_string(),
        ]
    );
    assert_eq!(
        warnings(&root, &report),
        vec![
            ("main.nf:18".to_string(), WarningKind::Unresolved),
            ("main.nf:22".to_string(), WarningKind::Unresolved),
        ]
    );
    assert!(report.warnings[0].message.contains(
        "`params.null_image` has no default (it is null); a run gives it with --null_image"
    ));
    assert!(report.warnings[1]
        .message
        .contains("`params.unset_image` is only known when the pipeline runs"));
}

#[test]
fn wdl_1_1_container_lists_and_any_container() {
    let (root, report) = scan("wdl-1.1-container", None);
    assert_eq!(
        findings(&root, &report),
        vec![
            "quay.io/biocontainers/samtools:1.17--h00cdaf9_0 tasks.wdl:14",
            "ubuntu:22.04 tasks.wdl:15",
        ]
    );
    assert_eq!(
        warnings(&root, &report),
        vec![("tasks.wdl:25".to_string(), WarningKind::Unresolved)]
    );
    assert!(report.warnings[0].message.contains("names no image"));
}

/// HealthOmics does not run Snakemake: its images are listed as skipped, never in the
/// manifest, and a conda-only rule is noted.
#[test]
fn snakemake_images_are_skipped_and_conda_only_rules_noted() {
    let (root, report) = scan("snakemake", None);
    assert!(report.manifest().is_empty());
    let skipped: Vec<String> = report
        .skipped
        .iter()
        .map(|s| format!("{} {}", s.value, at(&root, &s.location)))
        .collect();
    assert_eq!(
        skipped,
        vec![
            "biocontainers/samtools:v1.9-4-deb_cv1 Snakefile:16",
            "quay.io/biocontainers/bwa:0.7.17--he4a0461_11 Snakefile:10",
        ]
    );
    let notes: Vec<String> = report
        .notes
        .iter()
        .map(|n| at(&root, &n.location))
        .collect();
    assert_eq!(notes, vec!["Snakefile:0", "rules/count.smk:1"]);
    assert!(report.notes[0]
        .message
        .contains("a Snakemake workflow (2 files)"));
    assert!(report.notes[1]
        .message
        .contains("rule `count` has only a conda environment"));
    assert!(report.is_complete(), "{:?}", report.warnings);
}

#[test]
fn snakemake_global_container_covers_conda_rules_of_included_files() {
    let (root, report) = scan("snakemake-global", None);
    let skipped: Vec<String> = report
        .skipped
        .iter()
        .map(|s| format!("{} {}", s.value, at(&root, &s.location)))
        .collect();
    assert_eq!(skipped, vec!["continuumio/miniconda3 Snakefile:2"]);
    assert_eq!(report.notes.len(), 1, "{:?}", report.notes);
}

/// A sub-workflow's output read by its caller (`call_name.output`) is evaluated as that call
/// runs it; a task's output is only known when it runs.
#[test]
fn wdl_sub_workflow_outputs_flow_to_the_caller() {
    let (root, report) = scan("wdl-call-outputs", None);
    assert_eq!(
        findings(&root, &report),
        vec!["us-docker.pkg.dev/general-theiagen/staphb/pangolin:4.4-pdata-1.39 organism_parameters.wdl:10"]
    );
    assert_eq!(
        warnings(&root, &report),
        vec![("main.wdl:45".to_string(), WarningKind::Unresolved)]
    );
    assert!(
        report.warnings[0]
            .message
            .contains("`pangolin.version` is only known when the workflow runs"),
        "{}",
        report.warnings[0].message
    );
}
