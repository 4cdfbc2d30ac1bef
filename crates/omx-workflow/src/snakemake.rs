//! Snakemake (`Snakefile`, `*.smk`): HealthOmics does not run Snakemake, so its images are
//! not put in the manifest. They are listed as skipped values, a rule that has only a conda
//! environment is noted, and each file says once what it is, so a user scanning one knows
//! why the manifest is empty.

use crate::{Location, Note, ScanReport, Skipped, SourceFile};

/// The rule directives that name an image.
const IMAGE_DIRECTIVES: [&str; 2] = ["container", "singularity"];

/// The rule directive that names a conda environment.
const CONDA_DIRECTIVE: &str = "conda";

/// What a rule (or the file's top level, for a global `container:`) says.
#[derive(Default)]
struct Rule {
    name: Option<String>,
    line: usize,
    has_image: bool,
    has_conda: bool,
}

/// The image directives of a Snakemake file: `(line, keyword, value as written)`.
pub(crate) fn image_directives(text: &str) -> Vec<(usize, &'static str, String)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let (keyword, value) = directive(line)?;
            let keyword = IMAGE_DIRECTIVES.iter().find(|k| **k == keyword)?;
            Some((i + 1, *keyword, value.to_string()))
        })
        .collect()
}

/// `keyword: value` of a directive line, comments cut.
fn directive(line: &str) -> Option<(&str, &str)> {
    let code = line.split(" #").next().unwrap_or(line).trim();
    let (keyword, value) = code.split_once(':')?;
    let keyword = keyword.trim();
    keyword
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
        .then_some((keyword, value.trim()))
}

pub(crate) fn scan(source: &SourceFile) -> ScanReport {
    let mut report = ScanReport::default();
    let at = |line| Location {
        file: source.path.clone(),
        line,
    };
    report.notes.push(Note {
        location: at(0),
        message: "a Snakemake workflow: HealthOmics runs WDL, Nextflow and CWL, not Snakemake, \
                  so its images are listed as skipped, not put in the manifest"
            .to_string(),
    });
    let mut rules: Vec<Rule> = vec![Rule::default()];
    let mut global_image = false;
    for (i, line) in source.text.lines().enumerate() {
        let starts_rule = ["rule", "checkpoint"]
            .iter()
            .find_map(|k| line.strip_prefix(k).filter(|rest| rest.starts_with(' ')));
        if let Some(rest) = starts_rule {
            let name = rest
                .split(':')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string();
            rules.push(Rule {
                name: Some(name),
                line: i + 1,
                ..Rule::default()
            });
            continue;
        }
        let top_level = !line.starts_with([' ', '\t']);
        if top_level && !line.trim().is_empty() && !line.trim_start().starts_with('#') {
            rules.push(Rule::default());
        }
        let Some((keyword, value)) = directive(line) else {
            continue;
        };
        let rule = rules.last_mut().expect("there is always a current rule");
        if IMAGE_DIRECTIVES.contains(&keyword) {
            rule.has_image = true;
            global_image |= rule.name.is_none();
            let value = value.trim_matches(['"', '\'']);
            let value = value.strip_prefix("docker://").unwrap_or(value);
            report.answered_sites.insert(at(i + 1));
            report.skipped.push(Skipped {
                value: value.to_string(),
                location: at(i + 1),
                reason: format!(
                    "a Snakemake `{keyword}:` image; HealthOmics does not run Snakemake"
                ),
            });
        } else if keyword == CONDA_DIRECTIVE {
            rule.has_conda = true;
        }
    }
    for rule in &rules {
        if let (Some(name), true, false) = (&rule.name, rule.has_conda, rule.has_image) {
            if !global_image {
                report.notes.push(Note {
                    location: at(rule.line),
                    message: format!(
                        "Snakemake rule `{name}` has only a conda environment: it names no \
                         container image"
                    ),
                });
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Language;

    #[test]
    fn images_are_skipped_and_conda_only_rules_noted() {
        let source = SourceFile {
            path: "Snakefile".into(),
            text: "rule align:\n    input: \"a\"\n    container: \"docker://biocontainers/bwa:0.7.17\"\n    shell: \"bwa\"\n\nrule count:\n    conda: \"envs/count.yaml\"\n    shell: \"wc\"\n".into(),
            language: Language::Snakemake,
        };
        let report = scan(&source);
        assert_eq!(report.skipped.len(), 1);
        assert_eq!(report.skipped[0].value, "biocontainers/bwa:0.7.17");
        assert_eq!(report.skipped[0].location.line, 3);
        let notes: Vec<usize> = report.notes.iter().map(|n| n.location.line).collect();
        assert_eq!(notes, vec![0, 6]);
        assert_eq!(image_directives(&source.text).len(), 1);
    }
}
