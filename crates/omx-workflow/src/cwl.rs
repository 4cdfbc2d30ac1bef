//! CWL: `DockerRequirement` in `requirements` and `hints`, in the map form
//! (`DockerRequirement: {dockerPull: ...}`) and the list form (`- class: DockerRequirement`),
//! anywhere in the document (inline `run:` tools of workflow steps, `$graph` entries). JSON
//! documents are read by the same YAML parser, which keeps line numbers.

use saphyr::{LoadableYamlNode, MarkedYaml, YamlData};

use crate::expr::Value;
use crate::image::ContainerSite;
use crate::{Location, ScanReport, SourceFile, Warning, WarningKind};

/// The keys whose values hold process requirements.
const REQUIREMENT_KEYS: [&str; 2] = ["requirements", "hints"];

const DOCKER_REQUIREMENT: &str = "DockerRequirement";

/// Scans one CWL document.
pub(crate) fn scan(source: &SourceFile) -> ScanReport {
    let mut report = ScanReport::default();
    let documents = match MarkedYaml::load_from_str(&source.text) {
        Ok(documents) => documents,
        Err(error) => {
            report.warnings.push(Warning {
                location: Location {
                    file: source.path.clone(),
                    line: error.marker().line(),
                },
                kind: WarningKind::Unreadable,
                message: format!(
                    "not valid YAML or JSON ({}); its images are not listed",
                    error.info()
                ),
            });
            return report;
        }
    };
    for document in &documents {
        visit(document, &mut |requirement| {
            read_docker_requirement(requirement, source, &mut report)
        });
    }
    report
}

/// The documents that workflow steps run, named by path (`run: tools/sort.cwl`).
pub(crate) fn run_documents(text: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let Ok(documents) = MarkedYaml::load_from_str(text) else {
        return paths;
    };
    for document in &documents {
        collect_run_paths(document, &mut paths);
    }
    paths
}

fn collect_run_paths(node: &MarkedYaml, paths: &mut Vec<String>) {
    match &node.data {
        YamlData::Mapping(map) => {
            for (key, value) in map {
                if key.data.as_str() == Some("run") {
                    if let Some(path) = value.data.as_str() {
                        let path = path.split('#').next().unwrap_or_default();
                        if !path.is_empty() {
                            paths.push(path.to_string());
                        }
                    }
                }
                collect_run_paths(value, paths);
            }
        }
        YamlData::Sequence(items) => items.iter().for_each(|i| collect_run_paths(i, paths)),
        _ => {}
    }
}

/// Calls `on_docker_requirement` for every `DockerRequirement` under `requirements` or `hints`.
fn visit<'a>(node: &'a MarkedYaml<'a>, on_docker_requirement: &mut dyn FnMut(&'a MarkedYaml<'a>)) {
    match &node.data {
        YamlData::Mapping(map) => {
            for (key, value) in map {
                let holds_requirements = key
                    .data
                    .as_str()
                    .is_some_and(|k| REQUIREMENT_KEYS.contains(&k));
                if holds_requirements {
                    for requirement in docker_requirements(value) {
                        on_docker_requirement(requirement);
                    }
                }
                visit(value, on_docker_requirement);
            }
        }
        YamlData::Sequence(items) => {
            for item in items {
                visit(item, on_docker_requirement);
            }
        }
        _ => {}
    }
}

/// The `DockerRequirement` entries of a requirements value in either form.
fn docker_requirements<'a>(requirements: &'a MarkedYaml<'a>) -> Vec<&'a MarkedYaml<'a>> {
    match &requirements.data {
        YamlData::Mapping(map) => map
            .iter()
            .filter(|(class, _)| class.data.as_str() == Some(DOCKER_REQUIREMENT))
            .map(|(_, requirement)| requirement)
            .collect(),
        YamlData::Sequence(items) => items
            .iter()
            .filter(|item| {
                field(item, "class").and_then(|c| c.data.as_str()) == Some(DOCKER_REQUIREMENT)
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn field<'a>(node: &'a MarkedYaml<'a>, name: &str) -> Option<&'a MarkedYaml<'a>> {
    let YamlData::Mapping(map) = &node.data else {
        return None;
    };
    map.iter()
        .find(|(key, _)| key.data.as_str() == Some(name))
        .map(|(_, value)| value)
}

fn read_docker_requirement(requirement: &MarkedYaml, source: &SourceFile, report: &mut ScanReport) {
    let at = |node: &MarkedYaml| Location {
        file: source.path.clone(),
        line: node.span.start.line(),
    };
    let Some(pull) = field(requirement, "dockerPull") else {
        report.warnings.push(Warning {
            location: at(requirement),
            kind: WarningKind::Unresolved,
            message: "DockerRequirement without dockerPull: the image is built or loaded \
                      locally (dockerFile, dockerLoad, dockerImport); build it and list it \
                      yourself"
                .to_string(),
        });
        return;
    };
    let Some(image) = pull.data.as_str() else {
        report.warnings.push(Warning {
            location: at(pull),
            kind: WarningKind::InvalidImage,
            message: "dockerPull is not a string".to_string(),
        });
        return;
    };
    let site = ContainerSite {
        location: at(pull),
        expression: image,
        context: "",
        default_registry: None,
    };
    let value = if image.contains("$(") || image.contains("${") {
        Value::unknown("CWL expressions are only evaluated when the workflow runs")
    } else {
        Value::known(image, at(pull))
    };
    site.record(value, report);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Language;

    fn cwl(text: &str) -> SourceFile {
        SourceFile {
            path: "t.cwl".into(),
            text: text.into(),
            language: Language::Cwl,
        }
    }

    #[test]
    fn nested_step_tools_and_expressions() {
        let source = cwl(r#"cwlVersion: v1.2
class: Workflow
steps:
  sort:
    run:
      class: CommandLineTool
      hints:
        - class: ResourceRequirement
        - class: DockerRequirement
          dockerPull: "quay.io/biocontainers/samtools:1.17--h00cdaf9_0"
  other:
    run: tools/other.cwl#main
requirements:
  DockerRequirement:
    dockerPull: $(inputs.image)
  InlineJavascriptRequirement: {}
"#);
        let report = scan(&source);
        assert_eq!(report.findings.len(), 1);
        assert_eq!(
            report.findings[0].image,
            "quay.io/biocontainers/samtools:1.17--h00cdaf9_0"
        );
        assert_eq!(report.findings[0].location.line, 10);
        assert_eq!(report.warnings.len(), 1);
        assert_eq!(report.warnings[0].location.line, 15);
        assert_eq!(run_documents(&source.text), vec!["tools/other.cwl"]);
    }

    #[test]
    fn docker_file_without_pull_and_bad_yaml_are_warnings() {
        let built = scan(&cwl(
            "cwlVersion: v1.0\nrequirements:\n  - class: DockerRequirement\n    dockerFile: FROM x\n",
        ));
        assert_eq!(built.warnings[0].location.line, 3);
        let broken = scan(&cwl("cwlVersion: v1.0\nrequirements: [\n"));
        assert_eq!(broken.warnings[0].kind, WarningKind::Unreadable);
    }
}
