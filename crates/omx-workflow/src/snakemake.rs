//! Snakemake (`Snakefile`, `*.smk`): HealthOmics does not run Snakemake, so its images are
//! not put in the manifest. They are listed as skipped values, a rule that has only a conda
//! environment (and no global `container:` covers it) is noted, and one note says what the
//! workflow is, so a user scanning one knows why the manifest is empty.

use crate::{Location, Note, ScanReport, Skipped, SourceFile};

/// The rule directives that name an image.
const IMAGE_DIRECTIVES: [&str; 2] = ["container", "singularity"];

/// The rule directives that bring a conda environment: `conda:`, and `wrapper:` (a
/// snakemake-wrappers tool, which ships its own environment).
const CONDA_DIRECTIVES: [&str; 2] = ["conda", "wrapper"];

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

/// Scans the Snakemake files of one scan together: a global `container:` (in the
/// `Snakefile`, usually) applies to the rules of every file it includes.
pub(crate) fn scan(sources: &[&SourceFile]) -> ScanReport {
    let mut report = ScanReport::default();
    let Some(first) = sources.first() else {
        return report;
    };
    report.notes.push(Note {
        location: Location {
            file: first.path.clone(),
            line: 0,
        },
        message: format!(
            "a Snakemake workflow ({} file{}): HealthOmics runs WDL, Nextflow and CWL, not \
             Snakemake, so its images are listed as skipped, not put in the manifest",
            sources.len(),
            if sources.len() == 1 { "" } else { "s" }
        ),
    });
    let mut conda_only = Vec::new();
    let mut global_image = false;
    for source in sources {
        let rules = read_rules(source, &mut report);
        global_image |= rules.iter().any(|r| r.name.is_none() && r.has_image);
        conda_only.extend(
            rules
                .into_iter()
                .filter(|r| r.name.is_some() && r.has_conda && !r.has_image)
                .map(|r| (source, r)),
        );
    }
    if global_image {
        return report;
    }
    for (source, rule) in conda_only {
        report.notes.push(Note {
            location: Location {
                file: source.path.clone(),
                line: rule.line,
            },
            message: format!(
                "Snakemake rule `{}` has only a conda environment (conda: or wrapper:): it \
                 names no container image",
                rule.name.unwrap_or_default()
            ),
        });
    }
    report
}

/// The rules of one file (and its top level, a rule without a name), listing each image
/// directive as skipped.
fn read_rules(source: &SourceFile, report: &mut ScanReport) -> Vec<Rule> {
    let at = |line| Location {
        file: source.path.clone(),
        line,
    };
    let mut rules: Vec<Rule> = vec![Rule::default()];
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
        } else if CONDA_DIRECTIVES.contains(&keyword) {
            rule.has_conda = true;
        }
    }
    rules
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
        let report = scan(&[&source]);
        assert_eq!(report.skipped.len(), 1);
        assert_eq!(report.skipped[0].value, "biocontainers/bwa:0.7.17");
        assert_eq!(report.skipped[0].location.line, 3);
        let notes: Vec<usize> = report.notes.iter().map(|n| n.location.line).collect();
        assert_eq!(notes, vec![0, 6]);
        assert_eq!(image_directives(&source.text).len(), 1);
    }
}
