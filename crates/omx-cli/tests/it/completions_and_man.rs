//! Shell completions and man pages come from the clap definitions: every command and the flags
//! a user types most are in them.

use crate::util::binary;

fn omx(args: &[&str]) -> String {
    let output = binary().args(args).run();
    assert!(output.status.success(), "{args:?}: {output:?}");
    String::from_utf8(output.into_output().stdout).unwrap()
}

const COMMANDS: [&str; 10] = [
    "pull", "plan", "lock", "copy", "build", "scan", "map", "verify", "setup", "submit",
];

#[test]
fn completions_know_every_command_and_the_main_flags() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = omx(&["completions", shell]);
        for word in COMMANDS.iter().chain(&["dry-run", "output-map", "region"]) {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
}

#[test]
fn man_pages_describe_the_tool_and_every_command() {
    let page = omx(&["man"]);
    assert!(page.contains(".TH omx-ecr-helper 1"), "{page}");
    assert!(
        page.contains("Gets container images ready for AWS HealthOmics workflows"),
        "the NAME line is the tool's summary: {page}"
    );
    let dir = tempfile::tempdir().unwrap();
    omx(&["man", "--out-dir", dir.path().to_str().unwrap()]);
    for command in COMMANDS {
        let page = std::fs::read_to_string(dir.path().join(format!("omx-ecr-helper-{command}.1")))
            .unwrap_or_else(|error| panic!("no page for {command}: {error}"));
        assert!(
            page.contains(".SH OPTIONS") || page.contains(".SH SYNOPSIS"),
            "{page}"
        );
    }
    let pull = std::fs::read_to_string(dir.path().join("omx-ecr-helper-pull.1")).unwrap();
    assert!(pull.contains("dry\\-run"), "{pull}");
}
