//! The safety net: every `docker`, `container` or `dockerPull` directive in a scanned file
//! must have given an image, a warning or a skipped value. A directive that gave none was
//! dropped by a scanner bug; it becomes a warning here instead of disappearing.
//!
//! The directives are found by a sweep of the tokens (or YAML keys) that is deliberately
//! simpler than, and separate from, the language scanners, so a scanner that loses a
//! directive cannot also hide it from this check.

use std::collections::{BTreeSet, HashSet};

use saphyr::{LoadableYamlNode, MarkedYaml, YamlData};

use crate::lexer::{tokenize, Dialect, Token};
use crate::{Language, Location, ScanReport, SourceFile, Warning, WarningKind};

/// Adds a warning for each directive of `sources` that left nothing in `report` (no outcome
/// recorded for its site, no warning at its line). A file with
/// a whole-file warning (line 0: unreadable, not parsed) is already reported as a whole.
pub(crate) fn warn_about_dropped_directives(sources: &[SourceFile], report: &mut ScanReport) {
    let whole_file_warnings: HashSet<&std::path::Path> = report
        .warnings
        .iter()
        .filter(|w| w.location.line == 0)
        .map(|w| w.location.file.as_path())
        .collect();
    let warned_at: HashSet<&Location> = report.warnings.iter().map(|w| &w.location).collect();
    let mut dropped = Vec::new();
    for source in sources {
        if whole_file_warnings.contains(source.path.as_path()) {
            continue;
        }
        for (line, keyword) in directive_lines(source) {
            let location = Location {
                file: source.path.clone(),
                line,
            };
            if !report.answered_sites.contains(&location) && !warned_at.contains(&location) {
                dropped.push(Warning {
                    location,
                    kind: WarningKind::Missed,
                    message: format!(
                        "this `{keyword}` directive gave neither an image nor a warning (a \
                         scanner bug): add its image to the manifest by hand"
                    ),
                });
            }
        }
    }
    report.warnings.extend(dropped);
}

/// The lines where `source` writes an image directive, with the directive's keyword.
pub(crate) fn directive_lines(source: &SourceFile) -> BTreeSet<(usize, &'static str)> {
    match source.language {
        Language::Wdl => wdl_runtime_attributes(&tokenize(&source.text, Dialect::Wdl)),
        Language::Nextflow => nextflow_directives(&tokenize(&source.text, Dialect::Groovy), false),
        Language::NextflowConfig => {
            nextflow_directives(&tokenize(&source.text, Dialect::Groovy), true)
        }
        Language::Cwl | Language::CwlFragment => cwl_docker_pulls(&source.text),
        Language::Snakemake => crate::snakemake::image_directives(&source.text)
            .into_iter()
            .map(|(line, keyword, _)| (line, keyword))
            .collect(),
    }
}

/// `docker:` and `container:` directly inside a `runtime { }` or `requirements { }` section.
fn wdl_runtime_attributes(tokens: &[Token]) -> BTreeSet<(usize, &'static str)> {
    let mut lines = BTreeSet::new();
    let mut sections: Vec<bool> = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        if token.is_punct("{") {
            let opens_runtime = i > 0
                && (tokens[i - 1].is_ident("runtime") || tokens[i - 1].is_ident("requirements"));
            sections.push(opens_runtime);
        } else if token.is_punct("}") {
            sections.pop();
        } else if sections.last() == Some(&true)
            && tokens.get(i + 1).is_some_and(|t| t.is_punct(":"))
        {
            if let Some(keyword) = keyword_of(token, &["docker", "container"]) {
                lines.insert((token.line, keyword));
            }
        }
    }
    lines
}

/// Nextflow: in scripts, `container` at the start of a statement inside a `process` block; in
/// configs, `container =` under `process` (a selector in it, or `process.container`), in
/// profiles too.
fn nextflow_directives(tokens: &[Token], is_config: bool) -> BTreeSet<(usize, &'static str)> {
    let mut lines = BTreeSet::new();
    // The first word before each open `{`: `process`, `withName`, `profiles`, `if`, ...
    let mut blocks: Vec<String> = Vec::new();
    let mut statement_start = 0;
    for (i, token) in tokens.iter().enumerate() {
        if token.is_punct("{") {
            let head = tokens[statement_start..i]
                .iter()
                .find_map(Token::ident)
                .unwrap_or_default();
            blocks.push(head.to_string());
            statement_start = i + 1;
            continue;
        }
        if token.is_punct("}") || token.is_punct(";") || token.is_newline() {
            if token.is_punct("}") {
                blocks.pop();
            }
            statement_start = i + 1;
            continue;
        }
        if !token.is_ident("container") {
            continue;
        }
        let before = &tokens[statement_start..i];
        let next = tokens.get(i + 1);
        let in_process = blocks
            .iter()
            .any(|b| b == "process" || b == "withName" || b == "withLabel");
        let is_directive = if is_config {
            let prefix_ok = before.is_empty()
                || matches!(before, [p, dot] if p.is_ident("process") && dot.is_punct("."));
            let under_process = in_process || !before.is_empty();
            prefix_ok
                && under_process
                && !blocks.iter().any(|b| b == "params")
                && next.is_some_and(|t| t.is_punct("="))
        } else {
            before.is_empty()
                && blocks.iter().any(|b| b == "process")
                && next.is_some_and(|t| !t.is_punct(".") && !t.is_punct("?.") && !t.is_newline())
        };
        if is_directive {
            lines.insert((token.line, "container"));
        }
    }
    lines
}

/// Every `dockerPull` key of a CWL document, at the key's line.
fn cwl_docker_pulls(text: &str) -> BTreeSet<(usize, &'static str)> {
    fn visit(node: &MarkedYaml, lines: &mut BTreeSet<(usize, &'static str)>) {
        match &node.data {
            YamlData::Mapping(map) => {
                for (key, value) in map {
                    if key.data.as_str() == Some("dockerPull") {
                        lines.insert((key.span.start.line(), "dockerPull"));
                    }
                    visit(value, lines);
                }
            }
            YamlData::Sequence(items) => items.iter().for_each(|item| visit(item, lines)),
            _ => {}
        }
    }
    let mut lines = BTreeSet::new();
    if let Ok(documents) = MarkedYaml::load_from_str(text) {
        documents.iter().for_each(|d| visit(d, &mut lines));
    }
    lines
}

fn keyword_of(token: &Token, keywords: &[&'static str]) -> Option<&'static str> {
    keywords.iter().copied().find(|k| token.is_ident(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(language: Language, text: &str) -> Vec<usize> {
        let source = SourceFile {
            path: "f".into(),
            text: text.into(),
            language,
        };
        directive_lines(&source)
            .into_iter()
            .map(|(l, _)| l)
            .collect()
    }

    #[test]
    fn finds_directives_and_not_look_alikes() {
        assert_eq!(
            lines(
                Language::Wdl,
                "version 1.0\ntask t {\n  RuntimeAttr a = object { docker: \"x\" }\n  runtime {\n    docker: a.docker\n  }\n}\n"
            ),
            vec![5]
        );
        assert_eq!(
            lines(
                Language::Nextflow,
                "process A {\n  container 'a:1'\n}\ndef container = 'x'\nworkflow { x.container }\n"
            ),
            vec![2]
        );
        assert_eq!(
            lines(
                Language::NextflowConfig,
                "params { container = 'x' }\nprocess {\n  withName: A { container = 'a' }\n}\nprofiles {\n  p { process.container = 'b' }\n}\n"
            ),
            vec![3, 6]
        );
        assert_eq!(
            lines(
                Language::Cwl,
                "requirements:\n  DockerRequirement:\n    dockerPull:\n      $include: d.txt\n"
            ),
            vec![3]
        );
    }

    #[test]
    fn a_directive_nothing_answered_becomes_a_warning() {
        let source = SourceFile {
            path: "t.wdl".into(),
            text: "version 1.0\ntask t {\n  runtime { docker: \"a:1\" }\n}\n".into(),
            language: Language::Wdl,
        };
        let mut report = ScanReport::default();
        warn_about_dropped_directives(std::slice::from_ref(&source), &mut report);
        assert_eq!(report.warnings.len(), 1);
        assert_eq!(report.warnings[0].kind, WarningKind::Missed);
        assert_eq!(report.warnings[0].location.line, 3);
    }
}
