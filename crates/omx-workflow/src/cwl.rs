//! CWL: `DockerRequirement` in `requirements` and `hints`, in the map form
//! (`DockerRequirement: {dockerPull: ...}`) and the list form (`- class: DockerRequirement`),
//! anywhere in the document (inline `run:` tools of workflow steps, `$graph` entries), with
//! Schema Salad's `$import` and `$include` followed. `SoftwareRequirement`s are noted: they
//! name packages, not images. JSON documents are read by the same YAML parser, which keeps
//! line numbers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use saphyr::{LoadableYamlNode, MarkedYaml, YamlData};

use crate::expr::Value;
use crate::image::ContainerSite;
use crate::{resolve_relative, Location, Note, ScanReport, SourceFile, Warning, WarningKind};

/// The keys whose values hold process requirements.
const REQUIREMENT_KEYS: [&str; 2] = ["requirements", "hints"];

const DOCKER_REQUIREMENT: &str = "DockerRequirement";

/// Names software packages (for Conda, modules, Bioconda), not an image.
const SOFTWARE_REQUIREMENT: &str = "SoftwareRequirement";

/// Schema Salad's directives: a node `{$import: uri}` is replaced by the YAML document at
/// `uri`, a node `{$include: uri}` by that file's text, both resolved relative to the file
/// that writes them (as cwltool does).
const IMPORT: &str = "$import";
const INCLUDE: &str = "$include";

/// The files CWL documents `$import` and `$include`, parsed once, by path.
pub(crate) struct Fragments<'a> {
    texts: HashMap<&'a Path, &'a str>,
    parsed: HashMap<&'a Path, Vec<MarkedYaml<'a>>>,
}

impl<'a> Fragments<'a> {
    /// `sources`: every CWL document and fragment that was read.
    pub fn new(sources: &[&'a SourceFile]) -> Fragments<'a> {
        let texts = sources
            .iter()
            .map(|s| (s.path.as_path(), s.text.as_str()))
            .collect();
        let parsed = sources
            .iter()
            .filter_map(|s| Some((s.path.as_path(), MarkedYaml::load_from_str(&s.text).ok()?)))
            .collect();
        Fragments { texts, parsed }
    }
}

/// A YAML node and the file it was read from.
#[derive(Clone, Copy)]
struct Node<'n, 'a> {
    yaml: &'n MarkedYaml<'a>,
    file: &'n Path,
}

impl<'n, 'a> Node<'n, 'a> {
    fn at(&self) -> Location {
        Location {
            file: self.file.to_path_buf(),
            line: self.yaml.span.start.line(),
        }
    }
}

/// Scans one CWL document, following its `$import`s and `$include`s.
pub(crate) fn scan(source: &SourceFile, fragments: &Fragments) -> ScanReport {
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
    let mut scanner = Scanner {
        fragments,
        report: &mut report,
        importing: Vec::new(),
    };
    for document in &documents {
        scanner.visit(Node {
            yaml: document,
            file: &source.path,
        });
    }
    report
}

/// The documents that workflow steps run, named by path (`run: tools/sort.cwl`).
pub(crate) fn run_documents(text: &str) -> Vec<String> {
    referenced_paths(text, &["run"])
}

/// The files a CWL document or fragment takes in with `$import` or `$include`.
pub(crate) fn fragment_paths(text: &str) -> Vec<String> {
    referenced_paths(text, &[IMPORT, INCLUDE])
}

fn referenced_paths(text: &str, keys: &[&str]) -> Vec<String> {
    fn collect(node: &MarkedYaml, keys: &[&str], paths: &mut Vec<String>) {
        match &node.data {
            YamlData::Mapping(map) => {
                for (key, value) in map {
                    if key.data.as_str().is_some_and(|k| keys.contains(&k)) {
                        if let Some(path) = value.data.as_str() {
                            let path = path.split('#').next().unwrap_or_default();
                            if !path.is_empty() {
                                paths.push(path.to_string());
                            }
                        }
                    }
                    collect(value, keys, paths);
                }
            }
            YamlData::Sequence(items) => items.iter().for_each(|i| collect(i, keys, paths)),
            _ => {}
        }
    }
    let mut paths = Vec::new();
    if let Ok(documents) = MarkedYaml::load_from_str(text) {
        for document in &documents {
            collect(document, keys, &mut paths);
        }
    }
    paths
}

struct Scanner<'f, 'a, 'r> {
    fragments: &'f Fragments<'a>,
    report: &'r mut ScanReport,
    /// The files being imported, outermost first, to stop on an import cycle.
    importing: Vec<PathBuf>,
}

impl<'f, 'a> Scanner<'f, 'a, '_> {
    /// The target of `{$import: uri}` or `{$include: uri}` if `node` is one: the directive,
    /// the uri and the path it resolves to.
    fn directive(&self, node: Node) -> Option<(&'static str, String, PathBuf)> {
        let YamlData::Mapping(map) = &node.yaml.data else {
            return None;
        };
        let (key, value) = map.iter().next()?;
        let directive = [IMPORT, INCLUDE]
            .into_iter()
            .find(|d| key.data.as_str() == Some(d))?;
        let uri = value.data.as_str()?.to_string();
        let path = resolve_relative(node.file, uri.split('#').next().unwrap_or_default());
        Some((directive, uri, path))
    }

    /// Calls `with` on `node`, or on the document it `$import`s (warning when that cannot be
    /// read).
    fn resolved(&mut self, node: Node<'f, 'a>, with: &mut dyn FnMut(&mut Self, Node<'f, 'a>)) {
        let Some((IMPORT, uri, path)) = self.directive(node) else {
            return with(self, node);
        };
        let imported = self
            .fragments
            .parsed
            .get_key_value(path.as_path())
            .filter(|_| !uri.contains("://"));
        let Some((file, documents)) = imported else {
            self.report.warnings.push(Warning {
                location: node.at(),
                kind: WarningKind::Unreadable,
                message: format!(
                    "the imported file `{uri}` ({}) was not found or is not YAML (remote files \
                     are not fetched); the images it names are not listed",
                    path.display()
                ),
            });
            return;
        };
        if self.importing.contains(&path) {
            return;
        }
        self.importing.push(path);
        for document in documents {
            with(
                self,
                Node {
                    yaml: document,
                    file,
                },
            );
        }
        self.importing.pop();
    }

    /// Reads every `DockerRequirement` under `requirements` or `hints`.
    fn visit(&mut self, node: Node<'f, 'a>) {
        self.resolved(node, &mut |scanner, node| match &node.yaml.data {
            YamlData::Mapping(map) => {
                for (key, value) in map {
                    let value = Node {
                        yaml: value,
                        file: node.file,
                    };
                    let holds_requirements = key
                        .data
                        .as_str()
                        .is_some_and(|k| REQUIREMENT_KEYS.contains(&k));
                    if holds_requirements {
                        scanner.requirements(value);
                    }
                    scanner.visit(value);
                }
            }
            YamlData::Sequence(items) => {
                for item in items {
                    scanner.visit(Node {
                        yaml: item,
                        file: node.file,
                    });
                }
            }
            _ => {}
        });
    }

    /// The `DockerRequirement` entries of a requirements value in either form, each
    /// possibly `$import`ed.
    fn requirements(&mut self, requirements: Node<'f, 'a>) {
        self.resolved(
            requirements,
            &mut |scanner, requirements| match &requirements.yaml.data {
                YamlData::Mapping(map) => {
                    for (class, requirement) in map {
                        let requirement = Node {
                            yaml: requirement,
                            file: requirements.file,
                        };
                        match class.data.as_str() {
                            Some(DOCKER_REQUIREMENT) => {
                                scanner.resolved(requirement, &mut |s, r| s.docker_requirement(r))
                            }
                            Some(SOFTWARE_REQUIREMENT) => scanner.software_requirement(requirement),
                            _ => {}
                        }
                    }
                }
                YamlData::Sequence(items) => {
                    for item in items {
                        let item = Node {
                            yaml: item,
                            file: requirements.file,
                        };
                        scanner.resolved(item, &mut |s, item| {
                            let class =
                                field(item.yaml, "class").and_then(|(_, c)| c.data.as_str());
                            match class {
                                Some(DOCKER_REQUIREMENT) => s.docker_requirement(item),
                                Some(SOFTWARE_REQUIREMENT) => s.software_requirement(item),
                                _ => {}
                            }
                        });
                    }
                }
                _ => {}
            },
        );
    }

    /// A note: the packages a `SoftwareRequirement` names are not an image HealthOmics can run.
    fn software_requirement(&mut self, requirement: Node<'f, 'a>) {
        let packages = field(requirement.yaml, "packages").map(|(_, packages)| packages);
        let mut names: Vec<String> = match packages.map(|p| &p.data) {
            Some(YamlData::Sequence(items)) => items
                .iter()
                .filter_map(|item| field(item, "package")?.1.data.as_str().map(String::from))
                .collect(),
            Some(YamlData::Mapping(map)) => map
                .iter()
                .filter_map(|(name, _)| name.data.as_str())
                .filter(|name| !name.starts_with('$'))
                .map(String::from)
                .collect(),
            _ => Vec::new(),
        };
        names.sort();
        let named = if names.is_empty() {
            String::new()
        } else {
            format!(" ({})", names.join(", "))
        };
        self.report.notes.push(Note {
            location: requirement.at(),
            message: format!(
                "SoftwareRequirement names software packages{named}, not a container image; \
                 HealthOmics runs only the image a DockerRequirement gives"
            ),
        });
    }

    fn docker_requirement(&mut self, requirement: Node<'f, 'a>) {
        let Some((key, pull)) = field(requirement.yaml, "dockerPull") else {
            self.report.warnings.push(Warning {
                location: requirement.at(),
                kind: WarningKind::Unresolved,
                message: "DockerRequirement without dockerPull: the image is built or loaded \
                          locally (dockerFile, dockerLoad, dockerImport); build it and list it \
                          yourself"
                    .to_string(),
            });
            return;
        };
        let site = Node {
            yaml: key,
            file: requirement.file,
        }
        .at();
        let pull = Node {
            yaml: pull,
            file: requirement.file,
        };
        let (text, written_at) = match self.directive(pull) {
            Some((INCLUDE, uri, path)) => match self.fragments.texts.get(path.as_path()) {
                Some(text) => (
                    text.trim().to_string(),
                    Location {
                        file: path,
                        line: 1,
                    },
                ),
                None => {
                    self.report.warnings.push(Warning {
                        location: site,
                        kind: WarningKind::Unreadable,
                        message: format!(
                            "the file `{uri}` ({}) that dockerPull includes was not found; its \
                             image is not listed",
                            path.display()
                        ),
                    });
                    return;
                }
            },
            _ => match pull.yaml.data.as_str() {
                Some(text) => (text.to_string(), pull.at()),
                None => {
                    self.report.warnings.push(Warning {
                        location: site,
                        kind: WarningKind::InvalidImage,
                        message: "dockerPull is not a string".to_string(),
                    });
                    return;
                }
            },
        };
        let value = if text.contains("$(") || text.contains("${") {
            Value::unknown("CWL expressions are only evaluated when the workflow runs")
        } else {
            Value::known(text.clone(), written_at)
        };
        let site = ContainerSite {
            location: site,
            expression: &text,
            context: "",
            default_registry: None,
            process: None,
        };
        site.record(value, self.report);
    }
}

/// The key and value of the member `name` of a mapping.
fn field<'n, 'a>(
    node: &'n MarkedYaml<'a>,
    name: &str,
) -> Option<(&'n MarkedYaml<'a>, &'n MarkedYaml<'a>)> {
    let YamlData::Mapping(map) = &node.data else {
        return None;
    };
    map.iter().find(|(key, _)| key.data.as_str() == Some(name))
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
        let report = scan(&source, &Fragments::new(&[]));
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
        let none = Fragments::new(&[]);
        let built = scan(&cwl(
            "cwlVersion: v1.0\nrequirements:\n  - class: DockerRequirement\n    dockerFile: FROM x\n",
        ), &none);
        assert_eq!(built.warnings[0].location.line, 3);
        let broken = scan(&cwl("cwlVersion: v1.0\nrequirements: [\n"), &none);
        assert_eq!(broken.warnings[0].kind, WarningKind::Unreadable);
    }
}
