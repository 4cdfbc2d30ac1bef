//! The README's commands against the real binary, so the README stays true: every
//! `omx-ecr-helper` command it shows (in code blocks and in inline code) names a command that
//! exists and only flags that command accepts; `cargo install --path` names the CLI's crate; and
//! each `console` example of a command that needs no network (`plan`, `map`, `scan`) prints what
//! the README says it prints. The README's prose is not read, so it can change freely.

use std::path::{Path, PathBuf};

use omx_testenv::OmxOutput;

use crate::util::binary;

const BINARY: &str = "omx-ecr-helper";
/// Commands whose output depends only on their input files, so their examples can be run.
const OFFLINE: [&str; 3] = ["plan", "map", "scan"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A fenced code block: its language and lines.
struct Block {
    language: String,
    lines: Vec<String>,
}

fn blocks(readme: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    for line in readme.lines() {
        let fence = line.trim_start().strip_prefix("```");
        match (fence, current.take()) {
            (Some(_), Some(block)) => blocks.push(block),
            (Some(language), None) => {
                current = Some(Block {
                    language: language.trim().to_string(),
                    lines: Vec::new(),
                })
            }
            (None, Some(mut block)) => {
                block.lines.push(line.to_string());
                current = Some(block);
            }
            (None, None) => {}
        }
    }
    blocks
}

/// Shell lines with `\` continuations joined and a leading `$ ` prompt removed.
fn shell_lines(block: &Block) -> Vec<String> {
    let mut lines = Vec::new();
    let mut pending = String::new();
    for line in &block.lines {
        let line = line.trim();
        if let Some(start) = line.strip_suffix('\\') {
            pending.push_str(start);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        lines.push(pending.trim_start_matches("$ ").to_string());
        pending.clear();
    }
    lines
}

/// The words of a command line up to a comment, redirection or pipe.
fn words(line: &str) -> Vec<String> {
    line.split_whitespace()
        .take_while(|word| !matches!(*word, "#" | ">" | ">>" | "|" | "<"))
        .map(str::to_string)
        .collect()
}

/// `omx-ecr-helper ARGS` (or `cargo run ... -- ARGS`): the arguments.
fn omx_arguments(line: &str) -> Option<Vec<String>> {
    let words = words(line);
    if words.first().map(String::as_str) == Some(BINARY) {
        return Some(words[1..].to_vec());
    }
    if words.starts_with(&["cargo".to_string(), "run".to_string()]) {
        let dashes = words.iter().position(|word| word == "--")?;
        return Some(words[dashes + 1..].to_vec());
    }
    None
}

/// Every `omx-ecr-helper` command of the README: in code blocks and in inline code.
fn documented_commands(readme: &str) -> Vec<Vec<String>> {
    let mut commands: Vec<Vec<String>> = blocks(readme)
        .iter()
        .filter(|block| matches!(block.language.as_str(), "sh" | "console" | "bash" | ""))
        .flat_map(shell_lines)
        .filter_map(|line| omx_arguments(&line))
        .collect();
    for (n, span) in readme.split('`').enumerate() {
        if n % 2 == 1 {
            commands.extend(omx_arguments(span));
        }
    }
    commands
}

fn omx(args: &[&str], dir: &Path) -> OmxOutput {
    binary().args(args).current_dir(dir).run()
}

/// What is wrong with the commands `readme` shows, one line each.
fn command_problems(readme: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for command in documented_commands(readme) {
        let Some(subcommand) = command.iter().find(|word| !word.starts_with('-')) else {
            continue;
        };
        let help = omx(&[subcommand, "--help"], &workspace());
        if !help.status.success() {
            problems.push(format!(
                "`{BINARY} {}`: there is no command {subcommand}",
                command.join(" ")
            ));
            continue;
        }
        let help = String::from_utf8(help.stdout.clone()).unwrap();
        for flag in command.iter().filter(|word| word.starts_with("--")) {
            let flag = flag.split('=').next().unwrap();
            let known = help
                .split(|c: char| !(c.is_alphanumeric() || c == '-'))
                .any(|word| word == flag);
            if !known {
                problems.push(format!("`{BINARY} {subcommand}` does not take {flag}"));
            }
        }
    }
    problems
}

#[test]
fn every_documented_command_and_flag_exists() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    assert!(documented_commands(&readme).len() >= 5);
    assert_eq!(command_problems(&readme), Vec::<String>::new());
}

#[test]
fn a_wrong_command_or_flag_is_caught() {
    let readme = "Run `omx-ecr-helper frobnicate`, then\n\n```sh\nomx-ecr-helper pull m.json \\\n    --no-such-flag  # why\n```\n";
    assert_eq!(
        command_problems(readme),
        vec![
            "`omx-ecr-helper pull` does not take --no-such-flag".to_string(),
            "`omx-ecr-helper frobnicate`: there is no command frobnicate".to_string(),
        ]
    );
}

#[test]
fn cargo_install_names_the_cli_crate() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    for block in blocks(&readme) {
        for line in shell_lines(&block) {
            let words = words(&line);
            if !words.starts_with(&["cargo".to_string(), "install".to_string()]) {
                continue;
            }
            if let Some(at) = words.iter().position(|word| word == "--path") {
                let manifest = workspace().join(&words[at + 1]).join("Cargo.toml");
                let manifest = std::fs::read_to_string(&manifest)
                    .unwrap_or_else(|error| panic!("{}: {error}", manifest.display()));
                assert!(manifest.contains(&format!("name = \"{BINARY}\"")), "{line}");
            }
        }
    }
}

/// Each `console` example of an offline command prints what the README shows. The input file it
/// names is the README's last `json` block before it that is a pull manifest, or else the file of
/// that name in `examples/`.
#[test]
fn offline_console_examples_print_what_the_readme_shows() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let mut last_manifest: Option<String> = None;
    let mut checked = 0;
    for block in blocks(&readme) {
        if block.language == "json" && block.lines.join("\n").contains("\"manifest\"") {
            last_manifest = Some(block.lines.join("\n"));
        }
        if block.language != "console" {
            continue;
        }
        let mut lines = block.lines.iter().peekable();
        while let Some(line) = lines.next() {
            let Some(command) = line.strip_prefix("$ ") else {
                continue;
            };
            let mut expected = Vec::new();
            while let Some(next) = lines.next_if(|next| !next.starts_with("$ ")) {
                expected.push(next.trim_end().to_string());
            }
            let Some(args) = omx_arguments(command) else {
                continue;
            };
            if !args
                .first()
                .is_some_and(|first| OFFLINE.contains(&first.as_str()))
            {
                continue;
            }
            let dir = tempfile::tempdir().unwrap();
            for arg in args.iter().filter(|arg| arg.ends_with(".json")) {
                let example = workspace().join("examples").join(arg);
                let text = match (&last_manifest, std::fs::read_to_string(&example)) {
                    (Some(manifest), _) => manifest.clone(),
                    (None, Ok(text)) => text,
                    (None, Err(_)) => continue,
                };
                std::fs::write(dir.path().join(arg), text).unwrap();
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let output = omx(&args, dir.path());
            let actual: Vec<String> = String::from_utf8(output.stdout.clone())
                .unwrap()
                .lines()
                .map(|line| line.trim_end().to_string())
                .collect();
            while expected.last().is_some_and(String::is_empty) {
                expected.pop();
            }
            assert_eq!(actual, expected, "`{command}` in the README");
            checked += 1;
        }
    }
    assert!(
        checked > 0,
        "no console example of an offline command was found"
    );
}
