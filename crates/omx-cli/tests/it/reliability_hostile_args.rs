//! Hostile and careless arguments and paths, end to end through the binary: input "files" that
//! never end or are not files at all, credentials and tokens where they do not belong
//! (`--registry user:password@host`, `?access_token=` in a reference), and escape sequences in
//! arguments and file names.
//!
//! The properties: input is read with a bounded amount of memory and time; no credential is
//! repeated on stdout or stderr; no raw control character (other than our own line breaks)
//! reaches stdout or stderr, and what was rejected is still shown, escaped; each error names
//! the argument or file and the reason.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use omx_testenv::OmxOutput;

use crate::util::*;

const PASSWORD: &str = "S3cret-Hostile-77";
const TOKEN: &str = "tok-9f8e7d6c5b4a";

/// Control characters in `shown` other than line breaks: what a terminal would act on.
fn raw_controls(shown: &str) -> Vec<char> {
    shown
        .chars()
        .filter(|c| (c.is_control() && *c != '\n') || matches!(c, '\u{202e}' | '\u{200b}'))
        .collect()
}

fn assert_terminal_safe(case: &str, output: &OmxOutput) {
    for (stream, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
        let shown = text(bytes);
        let raw = raw_controls(&shown);
        assert!(raw.is_empty(), "{case}: raw {raw:?} on {stream}:\n{shown}");
    }
}

fn assert_no_credential(case: &str, output: &OmxOutput) {
    let all = output.all();
    for secret in [PASSWORD, TOKEN] {
        assert!(!all.contains(secret), "{case}: {secret:?} is shown:\n{all}");
    }
}

/// The binary under a 2 GiB address-space limit and a 20-second clock: an input read without a
/// bound fails the test (out of memory, or killed) instead of exhausting the machine.
fn omx_bounded(home: &Path, args: &[&str]) -> (OmxOutput, Duration) {
    // The isolated environment of every reliability test, under the limits.
    let command = isolated(home).args(args).wrapped(&[
        "sh",
        "-c",
        "ulimit -v 2097152; exec timeout -s KILL 20 \"$@\"",
        "sh",
    ]);
    let started = Instant::now();
    let output = command.run();
    (output, started.elapsed())
}

#[test]
fn input_files_that_never_end_or_are_not_files_are_refused_quickly_with_bounded_memory() {
    let home = tempfile::tempdir().unwrap();
    let fifo = home.path().join("manifest.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    // Sparse: 3 GiB long, no disk used; valid JSON's worth of nothing but NUL bytes.
    let huge = home.path().join("huge.json");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(3 << 30)
        .unwrap();
    let limit = omx_core::manifest_file::MAX_MANIFEST_BYTES;
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (
            vec!["plan", "/dev/zero"],
            "/dev/zero",
            "a device, not a regular file",
        ),
        (
            vec!["pull", "/dev/zero", "--registry", "127.0.0.1:9"],
            "/dev/zero",
            "a device, not a regular file",
        ),
        (
            vec!["lock", "/dev/zero"],
            "/dev/zero",
            "a device, not a regular file",
        ),
        (
            vec!["plan", fifo.to_str().unwrap()],
            fifo.to_str().unwrap(),
            "a FIFO (named pipe), not a regular file",
        ),
        (
            vec!["plan", "/tmp", "--registry", "127.0.0.1:9"],
            "/tmp",
            "a directory, not a regular file",
        ),
        (
            vec!["plan", "ubuntu.json", "--namespaces", "/dev/zero"],
            "/dev/zero",
            "a device",
        ),
        (
            vec!["plan", huge.to_str().unwrap()],
            huge.to_str().unwrap(),
            &*Box::leak(format!("the limit is {limit}").into_boxed_str()),
        ),
    ];
    for (args, named, reason) in cases {
        let (output, took) = omx_bounded(home.path(), &args);
        let case = format!("{args:?}");
        assert_eq!(output.code(), 2, "{case}: {}", output.all());
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains(named) && stderr.contains(reason),
            "{case}: expected {reason:?} about {named}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{case}: one line: {stderr}");
        assert!(took < Duration::from_secs(5), "{case}: took {took:?}");
    }
}

#[test]
fn a_ca_certificate_or_docker_config_that_is_not_a_file_is_refused_without_blocking() {
    let fifo_home = tempfile::tempdir().unwrap();
    let docker = fifo_home.path().join(".docker");
    std::fs::create_dir_all(&docker).unwrap();
    // A FIFO where the Docker config belongs: opening it would wait for a writer forever.
    let made = Command::new("mkfifo")
        .arg(docker.join("config.json"))
        .status()
        .unwrap();
    assert!(made.success());
    let plain_home = tempfile::tempdir().unwrap();
    let copy = ["copy", "127.0.0.1:9/a:1", "127.0.0.1:9/b:1"];
    for (home, extra, reason) in [
        (
            &fifo_home,
            vec![],
            "a FIFO (named pipe), not a regular file",
        ),
        (
            &plain_home,
            vec!["--ca-cert", "/dev/zero"],
            "a device, not a regular file",
        ),
    ] {
        let args: Vec<&str> = copy.iter().copied().chain(extra).collect();
        let (output, took) = omx_bounded(home.path(), &args);
        let case = format!("{args:?}");
        assert_eq!(output.code(), 1, "{case}: {}", output.all());
        let stderr = text(&output.stderr);
        assert_eq!(stderr.matches(reason).count(), 1, "{case}: {stderr}");
        assert!(took < Duration::from_secs(5), "{case}: took {took:?}");
    }
}

#[test]
fn credentials_in_registry_arguments_are_never_echoed() {
    let home = tempfile::tempdir().unwrap();
    let manifest = write_manifest(home.path(), "m.json", &["ubuntu:20.04".to_string()]);
    let manifest = manifest.to_str().unwrap();
    let userinfo = format!("admin:{PASSWORD}@127.0.0.1:5000");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            args(&["plan", manifest, "--registry", &userinfo]),
            "--registry",
        ),
        (
            args(&["pull", manifest, "--registry", &userinfo]),
            "--registry",
        ),
        (
            args(&[
                "pull",
                manifest,
                "--registry",
                &format!("http://admin:{PASSWORD}@h/"),
            ]),
            "--registry",
        ),
        (
            args(&["pull", manifest, "--insecure-registry", &userinfo]),
            "--insecure-registry",
        ),
        (
            args(&[
                "copy",
                "a:1",
                "b:1",
                "--insecure-registry",
                &format!("http://{userinfo}/"),
            ]),
            "--insecure-registry",
        ),
        (
            args(&["pull", manifest, "--ecr-registry-endpoint", &userinfo]),
            "--ecr-registry-endpoint",
        ),
        (
            args(&["copy", "a:1", "b:1", "--ecr-registry-endpoint", &userinfo]),
            "--ecr-registry-endpoint",
        ),
        (
            args(&["verify", manifest, "--ecr-registry-endpoint", &userinfo]),
            "--ecr-registry-endpoint",
        ),
        (
            args(&["copy", "a:1", "b:1", "--src-creds", PASSWORD]),
            "--src-creds",
        ),
        (
            args(&[
                "copy",
                "a:1",
                "b:1",
                "--dest-creds",
                &format!("{PASSWORD}\u{1b}[2J"),
            ]),
            "--dest-creds",
        ),
    ];
    for (arguments, flag) in cases {
        let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
        let output = run_isolated(home.path(), &arguments);
        let case = format!("{arguments:?}");
        assert_eq!(output.code(), 2, "{case}: {}", output.all());
        assert_no_credential(&case, &output);
        assert_terminal_safe(&case, &output);
        assert!(
            text(&output.stderr).contains(flag),
            "{case}: the error names {flag}: {}",
            text(&output.stderr)
        );
    }
}

#[test]
fn tokens_in_a_reference_query_string_are_never_echoed() {
    let home = tempfile::tempdir().unwrap();
    let references = [
        format!("127.0.0.1:5000/repo:1?access_token={TOKEN}"),
        format!("127.0.0.1:5000/repo:1?x=1&password={TOKEN}"),
        format!("127.0.0.1:5000/repo;secret={TOKEN}:1"),
        format!("user:{TOKEN}@127.0.0.1:5000/repo:1"),
    ];
    let manifest = write_manifest(home.path(), "tokens.json", &references);
    let manifest = manifest.to_str().unwrap();
    let mut runs = vec![
        args(&["plan", manifest]),
        args(&["plan", manifest, "--format", "json"]),
        args(&["pull", manifest, "--registry", "127.0.0.1:9"]),
        args(&[
            "pull",
            manifest,
            "--registry",
            "127.0.0.1:9",
            "--format",
            "json",
        ]),
    ];
    for reference in &references {
        runs.push(args(&["plan", "--single", reference]));
        runs.push(args(&["copy", reference, "127.0.0.1:9/x:1"]));
        runs.push(args(&["copy", "127.0.0.1:9/x:1", reference]));
    }
    for arguments in runs {
        let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
        let output = run_isolated(home.path(), &arguments);
        let case = format!("{arguments:?}");
        let code = output.code();
        assert!(code == 1 || code == 2, "{case}: {code}: {}", output.all());
        assert_no_credential(&case, &output);
        assert!(
            output.all().contains("invalid reference format"),
            "{case}: {}",
            output.all()
        );
    }
}

#[test]
fn escape_sequences_in_arguments_and_paths_are_shown_escaped() {
    let home = tempfile::tempdir().unwrap();
    let manifest = write_manifest(home.path(), "m.json", &["ubuntu:20.04".to_string()]);
    let manifest = manifest.to_str().unwrap();
    let hostile_path = home.path().join("bad\u{1b}[2J\u{7}.json");
    std::fs::write(&hostile_path, "{not json").unwrap();
    let hostile_path = hostile_path.to_str().unwrap();
    let missing = home.path().join("gone\u{1b}]0;title\u{7}\n.json");
    let missing = missing.to_str().unwrap();
    let runs: Vec<Vec<&str>> = vec![
        vec![
            "plan",
            manifest,
            "--registry",
            "h:5000\u{1b}[2J\u{1b}]0;x\u{7}",
        ],
        vec![
            "pull",
            manifest,
            "--registry",
            "h:5000\u{1b}[2J\u{1b}]0;x\u{7}",
        ],
        vec!["pull", manifest, "--platform", "linux/amd64\u{1b}[2J"],
        vec!["copy", "a:1", "b:1", "--platform", "linux/amd64\u{1b}[2J"],
        vec!["plan", manifest, "--format", "json\u{1b}[2J"],
        vec!["plan", manifest, "--bogus\u{1b}[2J"],
        vec!["pull", manifest, "--jobs", "8\u{1b}[2J"],
        vec!["pull", manifest, "--insecure-registry", "h\u{1b}[2J"],
        vec![
            "copy",
            "a:1",
            "b:1",
            "--ecr-registry-endpoint",
            "h\u{1b}[2J",
        ],
        vec!["plan", hostile_path],
        vec!["pull", hostile_path, "--registry", "127.0.0.1:9"],
        vec!["plan", missing],
        vec!["plan", manifest, "--namespaces", hostile_path],
        vec!["scan", missing],
    ];
    for arguments in runs {
        let output = run_isolated(home.path(), &arguments);
        let case = format!("{arguments:?}");
        assert_eq!(output.code(), 2, "{case}: {}", output.all());
        assert_terminal_safe(&case, &output);
        // Shown, not dropped: the user sees what was wrong with the value.
        assert!(
            text(&output.stderr).contains("\\u{1b}"),
            "{case}: {}",
            text(&output.stderr)
        );
    }
}

fn args(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| item.to_string()).collect()
}
