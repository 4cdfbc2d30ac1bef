//! Reading workflows from disk: which files are walked, which are skipped, and what makes a
//! path unusable.

use std::fs;
use std::path::Path;

use omx_workflow::{collect_sources, scan_path, Language, ScanError, WarningKind};

fn write(root: &Path, relative: &str, content: &[u8]) {
    let path = root.join(relative);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

#[test]
fn skips_work_hidden_and_dependency_directories_and_non_cwl_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "main.nf", b"process A { container 'a:1' }\n");
    write(
        root,
        "work/3f/a1b2/main.nf",
        b"process W { container 'work:1' }\n",
    );
    write(
        root,
        "node_modules/x/main.nf",
        b"process N { container 'node:1' }\n",
    );
    write(
        root,
        ".nextflow/cache.nf",
        b"process H { container 'hidden:1' }\n",
    );
    write(
        root,
        "sub/.snapshots/old.wdl",
        b"task t { runtime { docker: \"old:1\" } }\n",
    );
    write(
        root,
        "sub/tool.cwl.yaml",
        b"cwlVersion: v1.2\nhints:\n  DockerRequirement:\n    dockerPull: tool:1\n",
    );
    write(
        root,
        "sub/values.yaml",
        b"hints:\n  DockerRequirement:\n    dockerPull: values:1\n",
    );
    write(root, "README.md", b"container 'readme:1'\n");

    let collected = collect_sources(root).unwrap();
    let mut found: Vec<(String, Language)> = collected
        .sources
        .iter()
        .map(|s| {
            let relative = s.path.strip_prefix(root).unwrap();
            (relative.display().to_string(), s.language)
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        found,
        vec![
            ("main.nf".to_string(), Language::Nextflow),
            ("sub/tool.cwl.yaml".to_string(), Language::Cwl),
        ]
    );
    let report = scan_path(root, None).unwrap();
    assert_eq!(report.manifest(), vec!["a:1", "tool:1"]);
    assert!(report.is_complete());
}

#[test]
fn a_file_that_is_not_text_is_a_warning_for_the_whole_file() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "ok.wdl",
        b"task t { runtime { docker: \"ok:1\" } }\n",
    );
    write(
        dir.path(),
        "bad.nf",
        b"process B { container '\xff\xfe' }\n",
    );
    let report = scan_path(dir.path(), None).unwrap();
    assert_eq!(report.manifest(), vec!["ok:1"]);
    assert_eq!(report.warnings.len(), 1);
    let warning = &report.warnings[0];
    assert_eq!(warning.kind, WarningKind::Unreadable);
    assert_eq!(warning.location.file, dir.path().join("bad.nf"));
    assert_eq!(warning.location.line, 0);
    assert_eq!(
        warning.location.to_string(),
        dir.path().join("bad.nf").display().to_string()
    );
}

#[test]
fn a_config_file_brings_the_configs_it_includes_from_outside_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "pipeline/nextflow.config",
        b"includeConfig '../shared/images.config'\nincludeConfig 'conf/absent.config'\n",
    );
    write(
        dir.path(),
        "shared/images.config",
        b"docker.registry = 'quay.io'\nprocess.container = 'biocontainers/shared:1'\n",
    );
    let report = scan_path(&dir.path().join("pipeline/nextflow.config"), None).unwrap();
    assert_eq!(report.manifest(), vec!["quay.io/biocontainers/shared:1"]);
    assert_eq!(
        report.findings[0].location.file,
        dir.path().join("shared/images.config")
    );
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert_eq!(report.warnings[0].location.line, 2);
    assert!(report.warnings[0].message.contains("conf/absent.config"));
}

#[test]
fn unusable_paths_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    assert!(matches!(
        scan_path(&missing, None),
        Err(ScanError::NotFound { path }) if path == missing
    ));
    write(dir.path(), "notes.txt", b"container 'x:1'\n");
    let error = scan_path(&dir.path().join("notes.txt"), None).unwrap_err();
    assert!(matches!(error, ScanError::NotAWorkflow { .. }));
    assert!(error
        .to_string()
        .contains("notes.txt is not a workflow source"));
}
