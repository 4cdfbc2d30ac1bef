//! Nextflow: `container` directives in scripts, `process.container` and selector `container`
//! settings in configuration files, `docker.registry`, which Nextflow puts in front of image
//! names that have no registry host, and `params` defaults.
//!
//! A pipeline is the directory holding a `nextflow.config` that no other config includes and
//! no other pipeline's directory holds: its settings apply to every script and config under
//! that directory and to the configs it includes (see `pipeline`).

mod params;
mod parse;
mod pipeline;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::expr::evaluate;
use crate::image::ContainerSite;
use crate::{
    resolve_relative, Language, Location, Note, ScanReport, SourceFile, Warning, WarningKind,
};
use params::{pipeline_params, PipelineParams, PipelineScope};
use parse::{parse_file, Include, ParsedFile};
use pipeline::{params_of, pipeline_registry, pipelines, profile_only_configs};

/// Scans Nextflow scripts and configuration files together, so registry settings reach the
/// scripts of their pipeline.
pub(crate) fn scan(sources: &[&SourceFile]) -> ScanReport {
    let parsed: BTreeMap<&Path, ParsedFile> = sources
        .iter()
        .map(|s| (s.path.as_path(), parse_file(s)))
        .collect();
    let pipeline_of = pipelines(&parsed);
    let profile_only = profile_only_configs(&parsed);
    let registry_of_pipeline: HashMap<&Path, String> = pipeline_of
        .values()
        .filter_map(|root| Some((*root, pipeline_registry(root, &parsed, &pipeline_of)?)))
        .collect();

    let params_of_pipeline: HashMap<&Path, PipelineParams> = pipeline_of
        .values()
        .map(|root| (*root, params_of(root, &parsed, &pipeline_of, &profile_only)))
        .collect();
    let no_params = PipelineParams::default();

    let mut report = ScanReport::default();
    for (path, file) in &parsed {
        let pipeline = pipeline_of.get(path);
        let registry = pipeline
            .and_then(|root| registry_of_pipeline.get(root))
            .map(String::as_str);
        let own_params;
        let params = match pipeline.and_then(|root| params_of_pipeline.get(root)) {
            Some(params) => params,
            None if file.params.is_empty() => &no_params,
            None => {
                own_params = pipeline_params([(*path, file.params.as_slice(), None)]);
                &own_params
            }
        };
        for container in &file.containers {
            let location = Location {
                file: path.to_path_buf(),
                line: container.line,
            };
            let site = ContainerSite {
                location: location.clone(),
                expression: &container.source,
                context: "",
                default_registry: registry,
                process: container.process.clone(),
            };
            let scope = PipelineScope::new(params, None);
            site.record(evaluate(&container.expr, path, &scope), &mut report);
            let used_defaults = scope.used_defaults.into_inner();
            for profile in params.profiles_setting(&scope.params_read.into_inner()) {
                let scope = PipelineScope::new(params, Some(profile));
                site.record(evaluate(&container.expr, path, &scope), &mut report);
                report.notes.push(Note {
                    location: location.clone(),
                    message: format!(
                        "`-profile {profile}` sets a parameter this container uses; the image \
                         it gives then is listed too"
                    ),
                });
            }
            for (param, written_at) in used_defaults {
                let flag = param.trim_start_matches("params.");
                report.notes.push(Note {
                    location: location.clone(),
                    message: format!(
                        "the image is the default of `{param}` ({written_at}); a run can \
                         give another with --{flag}"
                    ),
                });
            }
            if let Some(selector) = &container.selector {
                report.notes.push(Note {
                    location: location.clone(),
                    message: format!(
                        "the processes `{selector}` selects run this container instead of \
                         their own `container` directive (a config setting wins over it)"
                    ),
                });
            }
            if let Some(profile) = container.profile.as_ref().or(profile_only.get(path)) {
                report.notes.push(Note {
                    location,
                    message: format!("this container is used only with `-profile {profile}`"),
                });
            }
        }
        for Include {
            path: include,
            line,
            ..
        } in &file.includes
        {
            let target = resolve_relative(path, include);
            if !parsed.contains_key(target.as_path()) {
                report.warnings.push(Warning {
                    location: Location {
                        file: path.to_path_buf(),
                        line: *line,
                    },
                    kind: WarningKind::Unreadable,
                    message: format!(
                        "the included config `{include}` ({}) was not found; the images it \
                         names are not listed",
                        target.display()
                    ),
                });
            }
        }
    }
    report
}

/// The literal paths of `includeConfig` statements in a configuration file, with their lines.
pub(crate) fn included_configs(text: &str) -> Vec<(String, usize)> {
    let source = SourceFile {
        path: PathBuf::new(),
        text: text.to_string(),
        language: Language::NextflowConfig,
    };
    parse_file(&source)
        .includes
        .into_iter()
        .map(|include| (include.path, include.line))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use omx_core::workflow_map::ProcessSelector;

    fn source(path: &str, text: &str) -> SourceFile {
        let language = if path.ends_with(".config") {
            Language::NextflowConfig
        } else {
            Language::Nextflow
        };
        SourceFile {
            path: path.into(),
            text: text.into(),
            language,
        }
    }

    fn images(report: &ScanReport) -> Vec<(String, usize)> {
        report
            .findings
            .iter()
            .map(|f| (f.image.clone(), f.location.line))
            .collect()
    }

    /// The process each finding is set for: what `map --format nextflow` writes its settings
    /// with, read from the scopes the scanner walks (braces in strings, comments and
    /// interpolations do not count).
    fn processes(report: &ScanReport) -> Vec<(String, Option<ProcessSelector>)> {
        report
            .findings
            .iter()
            .map(|f| (f.image.clone(), f.process.clone()))
            .collect()
    }

    #[test]
    fn script_containers_belong_to_their_process() {
        let script = source(
            "main.nf",
            r#"process FASTQC {
    label 'process_medium'
    container "${ workflow.containerEngine == 'singularity' ?
        'https://depot/fastqc' :
        'biocontainers/fastqc:0.12.1' }"

    script:
    """
    awk '{ print $1 }' ${reads} }}}
    """
}

/* process COMMENTED { */
process INDEX {
    // container 'commented:out' {
    container 'ghcr.io/example/index-tools:2.1'
    script:
    'echo }'
}

workflow {
    FASTQC(ch)
}
"#,
        );
        let mut report = scan(&[&script]);
        report.sort_and_dedup();
        let name = |n: &str| Some(ProcessSelector::WithName(n.to_string()));
        assert_eq!(
            processes(&report),
            vec![
                ("biocontainers/fastqc:0.12.1".into(), name("FASTQC")),
                ("ghcr.io/example/index-tools:2.1".into(), name("INDEX")),
            ]
        );
    }

    #[test]
    fn config_containers_keep_their_selector() {
        let config = source(
            "nextflow.config",
            r#"params { image = 'x' }
process.container = 'biocontainers/base:1'
process {
    withName: 'FOO' {
        container = 'biocontainers/foo:1.0--0'
    }
    withLabel: process_gpu { container = "nvcr.io/nvidia/clara:4.2" }
    'withName:BAR|BAZ' {
        cpus = 2
        container = 'biocontainers/bar:1'
    }
    container = 'biocontainers/generic:1'
}
profiles {
    test { process.container = 'ubuntu:22.04' }
}
"#,
        );
        let mut report = scan(&[&config]);
        report.sort_and_dedup();
        let all = Some(ProcessSelector::AllProcesses);
        assert_eq!(
            processes(&report),
            vec![
                (
                    "biocontainers/bar:1".into(),
                    Some(ProcessSelector::WithName("BAR|BAZ".into()))
                ),
                ("biocontainers/base:1".into(), all.clone()),
                (
                    "biocontainers/foo:1.0--0".into(),
                    Some(ProcessSelector::WithName("FOO".into()))
                ),
                ("biocontainers/generic:1".into(), all.clone()),
                (
                    "nvcr.io/nvidia/clara:4.2".into(),
                    Some(ProcessSelector::WithLabel("process_gpu".into()))
                ),
                // A profile's setting is still a setting for every process.
                ("ubuntu:22.04".into(), all),
            ]
        );
    }

    #[test]
    fn directive_forms_in_scripts() {
        let script = source(
            "main.nf",
            "process A {\n  container 'a:1'\n  input:\n  path x\n}\n\
             process B { container \"b:1\"; cpus 2 }\n\
             process C {\n  container = 'c:1' // comment 'd:1'\n}\n\
             process D {\n  container { task.attempt > 1 ? 'd:2' : 'd:1' }\n}\n\
             def container = 'not:directive'\nworkflow { x.container }\n",
        );
        let mut report = scan(&[&script]);
        report.sort_and_dedup();
        assert_eq!(
            images(&report),
            vec![
                ("a:1".into(), 2),
                ("b:1".into(), 6),
                ("c:1".into(), 8),
                ("d:1".into(), 11),
                ("d:2".into(), 11)
            ]
        );
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    }

    #[test]
    fn old_nf_core_if_else_form_keeps_the_docker_image() {
        let script = source(
            "main.nf",
            "process FASTQC {\n    if (workflow.containerEngine == 'singularity' && !params.pull) {\n        container \"https://depot.galaxyproject.org/singularity/fastqc:0.11.9--0\"\n    } else {\n        container \"quay.io/biocontainers/fastqc:0.11.9--0\"\n    }\n}\n",
        );
        let report = scan(&[&script]);
        assert_eq!(
            images(&report),
            vec![("quay.io/biocontainers/fastqc:0.11.9--0".into(), 5)]
        );
        assert_eq!(report.skipped.len(), 1);
        assert!(report.warnings.is_empty());
    }

    #[test]
    fn config_scopes_selectors_profiles_and_registry() {
        let config = source(
            "p/nextflow.config",
            "docker.registry = 'quay.io'\n\
             process {\n  withName: 'FOO' {\n    container = 'biocontainers/foo:1'\n  }\n  withLabel: big { container = \"ghcr.io/x/big:2\" }\n  cpus = { 2 * task.attempt }\n}\n\
             profiles {\n  test {\n    process.container = 'ubuntu:22.04'\n    docker.registry = 'elsewhere.io'\n  }\n}\n\
             params { container = 'not:aprocess' }\n",
        );
        let script = source(
            "p/modules/x/main.nf",
            "process X { container 'biocontainers/x:1' }",
        );
        let outside = source("q/main.nf", "process Y { container 'biocontainers/y:1' }");
        let mut report = scan(&[&config, &script, &outside]);
        report.sort_and_dedup();
        assert_eq!(
            report.manifest(),
            vec![
                "biocontainers/y:1",
                "ghcr.io/x/big:2",
                "quay.io/biocontainers/foo:1",
                "quay.io/biocontainers/x:1",
                "quay.io/ubuntu:22.04"
            ]
        );
    }

    #[test]
    fn includes_are_part_of_the_pipeline_and_missing_ones_warn() {
        let config = source(
            "nextflow.config",
            "includeConfig 'conf/base.config'\nincludeConfig 'conf/missing.config'\n\
             includeConfig params.custom ? \"${params.custom}/x.config\" : '/dev/null'\n",
        );
        assert_eq!(
            included_configs(&config.text),
            vec![
                ("conf/base.config".to_string(), 1),
                ("conf/missing.config".to_string(), 2)
            ]
        );
        let base = source("conf/base.config", "docker { registry = 'quay.io' }\n");
        let script = source("main.nf", "process A {\n container 'a/b:1'\n}");
        let report = scan(&[&config, &base, &script]);
        assert_eq!(images(&report), vec![("quay.io/a/b:1".into(), 2)]);
        assert_eq!(report.warnings.len(), 1);
        assert_eq!(report.warnings[0].location.line, 2);
        assert_eq!(report.warnings[0].kind, WarningKind::Unreadable);
    }

    #[test]
    fn expressions_become_warnings_at_the_directive() {
        let script = source(
            "main.nf",
            "process A {\n  container \"${params.image}\"\n}\nprocess B {\n  container params.b ?: 'b:1'\n}\n",
        );
        let report = scan(&[&script]);
        assert_eq!(images(&report), vec![("b:1".into(), 5)]);
        let warnings: Vec<(usize, &str)> = report
            .warnings
            .iter()
            .map(|w| (w.location.line, w.message.as_str()))
            .collect();
        assert_eq!(
            warnings,
            vec![
                (
                    2,
                    "cannot resolve the container image `\"${params.image}\"`: `params.image` is only known when the pipeline runs"
                ),
                (
                    5,
                    "cannot resolve the container image `params.b ?: 'b:1'`: `params.b` is only known when the pipeline runs"
                )
            ]
        );
    }
}
