//! The verify report as a table, with the command that fixes each failed check.

use omx_puller::{CheckStatus, Fix, MapReport, VerifyReport};

use crate::args::PullManifestArgs;
use crate::table;

/// The commands that fix failed checks, spelled for the input this run was given.
pub struct FixCommands {
    /// The manifest (or `--single IMAGE`) and the options that decide the private names.
    input: String,
    /// `--region`/`--profile` as given.
    aws: String,
}

impl FixCommands {
    /// The fixes for `input`, with `--profile`/`--region` as given.
    pub fn for_input(
        input_args: &PullManifestArgs,
        profile: Option<&str>,
        region: Option<&str>,
    ) -> FixCommands {
        let mut input = match (&input_args.single, &input_args.manifest) {
            (Some(image), _) => format!("--single {}", shell_word(image)),
            (None, Some(path)) => shell_word(&path.display().to_string()),
            (None, None) => String::new(),
        };
        if let Some(path) = &input_args.namespaces {
            input.push_str(&format!(
                " --namespaces {}",
                shell_word(&path.display().to_string())
            ));
        }
        let mut aws = String::new();
        if let Some(profile) = profile {
            aws.push_str(&format!(" --profile {}", shell_word(profile)));
        }
        let mut fixes = FixCommands { input, aws };
        if let Some(region) = region {
            fixes
                .aws
                .push_str(&format!(" --region {}", shell_word(region)));
        }
        fixes
    }

    pub fn command(&self, fix: &Fix) -> String {
        match fix {
            Fix::Pull => format!("omx-ecr-helper pull {}{}", self.input, self.aws),
            Fix::PullInto { region } => format!(
                "omx-ecr-helper pull {} --registry ecr --region {}",
                self.input,
                shell_word(region)
            ),
            Fix::Setup => format!("omx-ecr-helper setup{}", self.aws),
            Fix::Amd64Image => {
                "use an image with a linux/amd64 variant, or rebuild it for linux/amd64".to_string()
            }
        }
    }
}

/// `word` as one shell word: quoted when it holds anything but plain characters.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@=+,".contains(c));
    if plain {
        word.to_string()
    } else {
        // Escaped first: a path holding an escape sequence must not reach the terminal raw.
        format!(
            "'{}'",
            omx_core::excerpt::escape(word).replace('\'', r"'\''")
        )
    }
}

fn status_word(status: CheckStatus) -> &'static str {
    match status {
        CheckStatus::Pass => "pass",
        CheckStatus::Fail => "FAIL",
        CheckStatus::Skip => "-",
    }
}

pub fn render_map(map: &MapReport) -> String {
    let mut rows: Vec<Vec<String>> = map
        .mappings
        .iter()
        .map(|m| {
            vec![
                format!(
                    "{} -> {}/",
                    m.upstream_registry_url, m.ecr_repository_prefix
                ),
                status_word(m.status).to_string(),
                m.reason.clone(),
            ]
        })
        .collect();
    rows.extend(map.images.iter().map(|image| {
        vec![
            image.input.clone(),
            status_word(image.status).to_string(),
            image.reason.clone(),
        ]
    }));
    let failed = map
        .mappings
        .iter()
        .map(|m| m.status)
        .chain(map.images.iter().map(|i| i.status))
        .filter(|status| *status == CheckStatus::Fail)
        .count();
    format!(
        "\n{}\nregistry map: {} mapping(s), {} image(s), {failed} failed\n",
        table::render(&["MAPPING / IMAGE", "RESULT", "REASON"], &rows),
        map.mappings.len(),
        map.images.len()
    )
}

pub fn render(report: &VerifyReport, fixes: &FixCommands) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    for image in &report.images {
        for (position, check) in image.checks.iter().enumerate() {
            let first = if position == 0 {
                image.target.clone()
            } else {
                String::new()
            };
            rows.push(vec![
                first,
                check.kind.to_string(),
                status_word(check.status).to_string(),
                check.reason.clone(),
            ]);
            if let Some(fix) = &check.fix {
                let fix = format!("fix: {}", fixes.command(fix));
                rows.push(vec![String::new(), String::new(), String::new(), fix]);
            }
        }
    }
    let mut out = table::render(&["IMAGE", "CHECK", "RESULT", "REASON"], &rows);
    for error in &report.errors {
        out.push_str(&format!("invalid  {error}\n"));
    }
    let ready = report.images.iter().filter(|image| image.passed()).count();
    out.push_str(&format!(
        "\n{ready} of {} image(s) ready for HealthOmics, {} invalid entr{}\n",
        report.images.len(),
        report.errors.len(),
        if report.errors.len() == 1 { "y" } else { "ies" }
    ));
    out
}
