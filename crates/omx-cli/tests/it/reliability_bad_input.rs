//! Bad input, end to end through the binary: malformed and oversized manifest files, entries of
//! the wrong type, empty and huge manifests, references at and past the length limits, unicode
//! and control characters, registries serving unknown or oversized manifests, and manifests
//! whose bytes do not match the digest asked for.
//!
//! Each must end in a clear error that names the entry (or file) and the reason, with exit code
//! 1 (some entries failed) or 2 (unusable input), never a panic (101), and nothing written to
//! the target.
//!
//! (Over 600 lines: ten tests, one per kind of bad input, the longer ones tables of cases with
//! their expected errors; splitting them would only scatter one catalogue.)

use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use omx_core::Digest;
use omx_testenv::OmxOutput;
use omx_testenv::{
    read_request, Fault, FaultProxy, FaultRule, Format, ImageFixture, LayerSpec, Registry,
};
use serde_json::{json, Value};

use crate::util::*;

const ECR: &str = "ecr://123456789012/us-east-1";

fn plan_json(home: &Path, manifest: &Path) -> (i32, Value) {
    let output = run_isolated(
        home,
        &[
            "plan",
            manifest.to_str().unwrap(),
            "--registry",
            ECR,
            "--format",
            "json",
        ],
    );
    let code = output.code();
    (code, output.json())
}

/// `index -> error message` of a plan's or report's entry errors.
fn entry_errors(report: &Value) -> Vec<(u64, String)> {
    report["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|error| {
            (
                error["index"].as_u64().expect("index"),
                error["error"].as_str().expect("error").to_string(),
            )
        })
        .collect()
}

/// Asserts an exit code 2 whose message names `file` and contains `reason`.
fn assert_unusable(output: &OmxOutput, file: &Path, reason: &str) {
    assert_eq!(output.code(), 2, "{}", output.all());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&file.display().to_string()) && stderr.contains(reason),
        "expected {reason:?} about {}: {stderr}",
        file.display()
    );
}

#[test]
fn unusable_manifest_files_exit_2_naming_the_file_and_the_reason() {
    let Some(target) = Registry::try_start() else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let deeply_nested = format!(
        "{{\"manifest\": {}{}}}",
        "[".repeat(50_000),
        "]".repeat(50_000)
    );
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "trailing-comma.json",
            br#"{"manifest": ["ubuntu:20.04",]}"#.to_vec(),
            "not valid JSON: line 1, column 30",
        ),
        ("empty.json", Vec::new(), "not valid JSON"),
        (
            "array.json",
            b"[\"ubuntu:20.04\"]".to_vec(),
            "found an array",
        ),
        (
            "string.json",
            br#"{"manifest": "ubuntu:20.04"}"#.to_vec(),
            "\"manifest\" is a string, not an array",
        ),
        (
            "unknown-key.json",
            br#"{"images": ["ubuntu:20.04"]}"#.to_vec(),
            "unknown key \"images\"",
        ),
        ("no-key.json", b"{}".to_vec(), "\"manifest\" key is missing"),
        (
            "not-utf8.json",
            b"{\"manifest\": [\"ub\xff\xfe\"]}".to_vec(),
            "valid UTF-8",
        ),
        ("nested.json", deeply_nested.into_bytes(), "recursion limit"),
    ];
    for (name, content, reason) in &cases {
        let file = home.path().join(name);
        std::fs::write(&file, content).unwrap();
        let output = run_isolated(home.path(), &["plan", file.to_str().unwrap()]);
        assert_unusable(&output, &file, reason);
        let output = run_isolated(
            home.path(),
            &["pull", file.to_str().unwrap(), "--registry", &target.host()],
        );
        assert_unusable(&output, &file, reason);
    }
    let missing = home.path().join("missing.json");
    let output = run_isolated(home.path(), &["plan", missing.to_str().unwrap()]);
    assert_unusable(&output, &missing, "cannot read");
    let output = run_isolated(home.path(), &["plan", home.path().to_str().unwrap()]);
    assert_unusable(&output, home.path(), "cannot read");
    assert_eq!(writes_logged(&target), 0, "{}", target.log());
}

#[test]
fn a_manifest_file_over_the_size_limit_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("huge.json");
    let limit = omx_core::manifest_file::MAX_MANIFEST_BYTES;
    // Valid JSON, so only its size is wrong.
    let mut content = br#"{"manifest": []}"#.to_vec();
    content.resize(limit + 1, b' ');
    std::fs::write(&file, content).unwrap();
    let output = run_isolated(home.path(), &["plan", file.to_str().unwrap()]);
    assert_unusable(&output, &file, &format!("the limit is {limit}"));
}

#[test]
fn entries_of_the_wrong_type_are_reported_by_index_and_the_rest_planned() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("types.json");
    let manifest = json!({"manifest": [
        1, null, true, {"image": "ubuntu:20.04"}, ["ubuntu:20.04"], "", "   ", "ubuntu:20.04", 2.5
    ]});
    std::fs::write(&file, manifest.to_string()).unwrap();
    let (code, plan) = plan_json(home.path(), &file);
    assert_eq!(code, 1);
    assert_eq!(plan["images"].as_array().unwrap().len(), 1, "{plan}");
    assert_eq!(plan["images"][0]["input"], "ubuntu:20.04");
    let expected = [
        (0, "found a number"),
        (1, "found null"),
        (2, "found a boolean"),
        (3, "found an object"),
        (4, "found an array"),
        (5, "empty image reference"),
        (6, "empty image reference"),
        (8, "found a number"),
    ];
    let errors = entry_errors(&plan);
    assert_eq!(errors.len(), expected.len(), "{plan}");
    for ((index, message), (expected_index, reason)) in errors.iter().zip(expected) {
        assert_eq!(*index, expected_index, "{plan}");
        assert!(message.contains(reason), "manifest[{index}]: {message}");
    }

    // The table names every entry by index too.
    let output = run_isolated(home.path(), &["plan", file.to_str().unwrap()]);
    assert_eq!(output.code(), 1);
    let stdout = text(&output.stdout);
    for (index, _) in expected {
        assert!(stdout.contains(&format!("manifest[{index}]")), "{stdout}");
    }
    assert!(
        stdout.contains("1 image(s) planned, 8 invalid entries"),
        "{stdout}"
    );
}

#[test]
fn an_empty_manifest_is_nothing_to_do() {
    let Some(target) = Registry::try_start() else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let file = write_manifest(home.path(), "empty.json", &[]);
    let output = run_isolated(home.path(), &["plan", file.to_str().unwrap()]);
    assert_eq!(output.code(), 0, "{}", output.all());
    assert!(
        text(&output.stdout).contains("0 image(s) planned, 0 invalid entries"),
        "{}",
        text(&output.stdout)
    );

    let target_host = target.host();
    let pull = |format: &str| {
        run_isolated(
            home.path(),
            &[
                "pull",
                file.to_str().unwrap(),
                "--registry",
                &target_host,
                "--format",
                format,
            ],
        )
    };
    let output = pull("json");
    assert_eq!(output.code(), 0, "{}", output.all());
    assert_eq!(
        output.json(),
        json!({"images": [], "errors": []}),
        "{}",
        text(&output.stdout)
    );
    let output = pull("table");
    assert_eq!(output.code(), 0, "{}", output.all());
    assert!(
        text(&output.stdout).contains("0 succeeded, 0 skipped, 0 failed"),
        "{}",
        text(&output.stdout)
    );
    assert_eq!(writes_logged(&target), 0, "{}", target.log());
}

#[test]
fn ten_thousand_entries_plan_with_duplicates_merged() {
    let home = tempfile::tempdir().unwrap();
    // 2,500 images, each written four ways Docker reads as the same reference.
    let distinct = 2_500;
    let entries: Vec<String> = (0..distinct)
        .flat_map(|index| {
            [
                format!("tool{index}:1.{index}"),
                format!("docker.io/library/tool{index}:1.{index}"),
                format!("index.docker.io/library/tool{index}:1.{index}"),
                format!("  dockerhub/tool{index}:1.{index}  "),
            ]
        })
        .collect();
    assert_eq!(entries.len(), 10_000);
    let file = write_manifest(home.path(), "big.json", &entries);
    let (code, plan) = plan_json(home.path(), &file);
    assert_eq!(code, 0, "{plan}");
    let images = plan["images"].as_array().unwrap();
    assert_eq!(images.len(), distinct);
    assert!(entry_errors(&plan).is_empty(), "{}", plan["errors"]);
    assert_eq!(images[7]["input"], "tool7:1.7");
    assert_eq!(
        images[7]["target"],
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/dockerhub/tool7:1.7"
    );

    let output = run_isolated(
        home.path(),
        &["plan", file.to_str().unwrap(), "--registry", ECR],
    );
    assert_eq!(output.code(), 0);
    assert!(
        text(&output.stdout).contains("2500 image(s) planned, 0 invalid entries"),
        "{}",
        text(&output.stdout)
    );
}

#[test]
fn references_at_and_past_the_length_limits() {
    let home = tempfile::tempdir().unwrap();
    let host = "example.org";
    // A path of `length` characters in components of at most 40.
    let path_of = |length: usize| -> String {
        let mut path = String::new();
        while path.len() < length {
            if !path.is_empty() {
                path.push('/');
            }
            let room = (length - path.len()).min(40);
            path.push_str(&"a".repeat(room));
        }
        path
    };
    let name_at_limit = format!("{host}/{}", path_of(255 - host.len() - 1));
    let name_past_limit = format!("{host}/{}", path_of(256 - host.len() - 1));
    assert_eq!((name_at_limit.len(), name_past_limit.len()), (255, 256));
    let tag_at_limit = format!("{host}/tool:{}", "t".repeat(128));
    let tag_past_limit = format!("{host}/tool:{}", "t".repeat(129));
    let entries = vec![
        format!("{name_at_limit}:1"),
        format!("{name_past_limit}:1"),
        tag_at_limit,
        tag_past_limit,
        format!("{host}/{}:1", "b".repeat(100_000)),
        format!("{host}/tool:{}", "t".repeat(100_000)),
    ];
    let file = write_manifest(home.path(), "limits.json", &entries);
    let (code, plan) = plan_json(home.path(), &file);
    assert_eq!(code, 1, "{plan}");
    let planned: Vec<&str> = plan["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|image| image["input"].as_str().unwrap())
        .collect();
    assert_eq!(planned, [entries[0].as_str(), entries[2].as_str()]);
    let errors = entry_errors(&plan);
    let expected = [
        (1, "256 characters long; the limit is 255"),
        (3, "tag in"),
        (4, "the limit is 255"),
        (5, "the limit is 128"),
    ];
    assert_eq!(errors.len(), expected.len(), "{}", plan["errors"]);
    for ((index, message), (expected_index, reason)) in errors.iter().zip(expected) {
        assert_eq!(*index, expected_index);
        assert!(message.contains(reason), "manifest[{index}]: {message}");
    }
    assert!(errors[1]
        .1
        .contains("129 characters long; the limit is 128"));
    // The 100,000-character entries are named by an excerpt and their length, not echoed whole.
    for (error, entry) in plan["errors"].as_array().unwrap()[2..]
        .iter()
        .zip(&entries[4..])
    {
        let (input, message) = (
            error["input"].as_str().unwrap(),
            error["error"].as_str().unwrap(),
        );
        let length = format!("({} characters)", entry.chars().count());
        assert!(
            input.ends_with(&length) && message.contains(&length),
            "{input}: {message}"
        );
        assert!(input.len() + message.len() < 1_000, "{input}: {message}");
    }
    let table = run_isolated(
        home.path(),
        &["plan", file.to_str().unwrap(), "--registry", ECR],
    );
    assert!(table.all().len() < 4_000, "{}", table.all());
    assert!(table
        .all()
        .contains(&format!("({} characters)", entries[4].len())));
}

#[test]
fn unicode_and_control_characters_are_entry_errors_shown_escaped() {
    let Some(target) = Registry::try_start() else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let entries: Vec<String> = [
        "ubüntu:20.04",
        "ubuntu:20.04ü",
        "🐳/tool:1",
        "ubuntu:20.04\u{7}",
        "ubuntu\u{0}:1",
        "ubuntu:1\r\nX-Injected: yes",
        "\u{202e}ubuntu:1",
        "ubuntu:\u{1b}[31mred",
        "ｕｂｕｎｔｕ:1",
        "quay.io/bio\u{200b}containers/x:1",
    ]
    .iter()
    .map(|entry| entry.to_string())
    .collect();
    let file = write_manifest(home.path(), "unicode.json", &entries);

    let (code, plan) = plan_json(home.path(), &file);
    assert_eq!(code, 1, "{plan}");
    assert_eq!(plan["images"], json!([]), "{plan}");
    let errors = plan["errors"].as_array().unwrap();
    assert_eq!(errors.len(), entries.len(), "{plan}");
    for (error, entry) in errors.iter().zip(&entries) {
        // The JSON report carries the entry exactly, for tools to match on.
        assert_eq!(error["input"], entry.as_str());
        assert!(
            error["error"]
                .as_str()
                .unwrap()
                .contains("invalid reference format"),
            "{error}"
        );
    }

    // Text output shows every entry escaped: no terminal control sequence, no line injected.
    let output = run_isolated(home.path(), &["plan", file.to_str().unwrap()]);
    assert_eq!(output.code(), 1);
    let target_host = target.host();
    let pull = run_isolated(
        home.path(),
        &["pull", file.to_str().unwrap(), "--registry", &target_host],
    );
    assert_eq!(pull.code(), 1, "{}", pull.all());
    for shown in [output.all(), pull.all()] {
        let raw: Vec<char> = shown
            .chars()
            .filter(|c| (c.is_control() && *c != '\n') || *c == '\u{202e}' || *c == '\u{200b}')
            .collect();
        assert!(raw.is_empty(), "raw {raw:?} in:\n{shown}");
        assert!(!shown.contains("\nX-Injected"), "{shown}");
        for index in 0..entries.len() {
            assert!(shown.contains(&format!("manifest[{index}]")), "{shown}");
        }
    }
    assert_eq!(writes_logged(&target), 0, "{}", target.log());
}

/// A registry that answers what a real one would not: a manifest of an unknown media type, and
/// manifests over the 4 MiB limit (with and without a `Content-Length`).
struct OddRegistry {
    host: String,
    stopping: Arc<AtomicBool>,
}

const UNKNOWN_TYPE: &str = "application/vnd.example.thing.v1+json";
const OVER_LIMIT: usize = 4 * 1024 * 1024 + 1;

impl OddRegistry {
    fn start() -> OddRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = stopping.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(stream) = stream {
                    // A client that hangs up early only ends its own connection.
                    thread::spawn(move || {
                        let _ = answer(stream);
                    });
                }
            }
        });
        OddRegistry { host, stopping }
    }
}

impl Drop for OddRegistry {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.host);
    }
}

/// A body of exactly `length` bytes that is a well-formed OCI manifest.
fn padded_manifest(length: usize) -> Vec<u8> {
    let head = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[],"padding":""#;
    let tail = br#""}"#;
    let mut body = head.to_vec();
    body.resize(length - tail.len(), b'x');
    body.extend_from_slice(tail);
    body
}

fn answer(stream: TcpStream) -> std::io::Result<()> {
    let Some((method, path)) = read_request(&mut BufReader::new(stream.try_clone()?))? else {
        return Ok(());
    };
    let (method, path) = (method.as_str(), path.as_str());
    let head_only = method == "HEAD";
    let mut out = std::io::BufWriter::new(stream);
    let send = |out: &mut std::io::BufWriter<TcpStream>,
                content_type: &str,
                body: &[u8],
                chunked: bool|
     -> std::io::Result<()> {
        let digest = Digest::sha256_of(body);
        let framing = if chunked {
            "Transfer-Encoding: chunked".to_string()
        } else {
            format!("Content-Length: {}", body.len())
        };
        write!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nDocker-Content-Digest: {digest}\r\n\
             {framing}\r\nConnection: close\r\n\r\n"
        )?;
        if head_only {
            return out.flush();
        }
        if chunked {
            for chunk in body.chunks(64 * 1024) {
                write!(out, "{:x}\r\n", chunk.len())?;
                out.write_all(chunk)?;
                out.write_all(b"\r\n")?;
            }
            out.write_all(b"0\r\n\r\n")?;
        } else {
            out.write_all(body)?;
        }
        out.flush()
    };
    match path {
        "/v2/" => send(&mut out, "application/json", b"{}", false),
        "/v2/odd/unknown/manifests/1" => {
            let body = json!({"schemaVersion": 2, "mediaType": UNKNOWN_TYPE, "payload": "x"});
            send(&mut out, UNKNOWN_TYPE, body.to_string().as_bytes(), false)
        }
        "/v2/odd/huge/manifests/1" => send(
            &mut out,
            "application/vnd.oci.image.manifest.v1+json",
            &padded_manifest(OVER_LIMIT),
            false,
        ),
        "/v2/odd/huge-chunked/manifests/1" => send(
            &mut out,
            "application/vnd.oci.image.manifest.v1+json",
            &padded_manifest(OVER_LIMIT),
            true,
        ),
        _ => {
            let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
            write!(
                out,
                "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n",
                body.len()
            )?;
            if !head_only {
                out.write_all(body)?;
            }
            out.flush()
        }
    }
}

#[test]
fn unknown_media_types_and_oversized_manifests_fail_the_image_and_write_nothing() {
    let Some(target) = Registry::try_start() else {
        return;
    };
    let odd = OddRegistry::start();
    let home = tempfile::tempdir().unwrap();
    let cases = [
        ("odd/unknown", "unsupported manifest media type"),
        ("odd/huge", "larger than the 4194304-byte limit"),
        ("odd/huge-chunked", "larger than the 4194304-byte limit"),
    ];
    for (path, reason) in cases {
        let source = format!("{}/{path}:1", odd.host);
        let output = run_isolated(
            home.path(),
            &["copy", &source, &format!("{}/{path}:1", target.host())],
        );
        assert_eq!(output.code(), 1, "{}", output.all());
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains(&source) && stderr.contains(reason),
            "expected {reason:?} about {source}: {stderr}"
        );
    }

    let entries: Vec<String> = cases
        .iter()
        .map(|(path, _)| format!("{}/{path}:1", odd.host))
        .collect();
    let file = write_manifest(home.path(), "odd.json", &entries);
    let output = run_isolated(
        home.path(),
        &[
            "pull",
            file.to_str().unwrap(),
            "--registry",
            &target.host(),
            "--format",
            "json",
        ],
    );
    assert_eq!(output.code(), 1, "{}", output.all());
    let report = output.json();
    for ((image, entry), (_, reason)) in report["images"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&entries)
        .zip(cases)
    {
        assert_eq!(image["input"], entry.as_str());
        assert_eq!(image["status"], "FAILED");
        let message = image["message"].as_str().unwrap();
        assert!(message.contains(reason), "{entry}: {message}");
    }
    assert_eq!(writes_logged(&target), 0, "{}", target.log());
}

#[test]
fn a_digest_reference_served_with_other_bytes_is_refused() {
    let Some(source) = Registry::try_start() else {
        return;
    };
    let target = Registry::start();
    let home = tempfile::tempdir().unwrap();
    let digest = ImageFixture::single(&LayerSpec::distinct(90, 1, 20_000), Format::Oci)
        .push(&source, "team/pinned:1");
    let proxy = FaultProxy::start(&source);
    proxy.add_rule(
        FaultRule::new(Fault::CorruptByte)
            .method("GET")
            .path_contains("/manifests/"),
    );
    let pinned = format!("{}/team/pinned@{digest}", proxy.host());
    let file = write_manifest(home.path(), "pinned.json", std::slice::from_ref(&pinned));
    let target_host = target.host();

    // Both commands at once: each waits out its retries before giving up.
    let (copied, pulled) = thread::scope(|scope| {
        let copy = scope.spawn(|| {
            run_isolated(
                home.path(),
                &["copy", &pinned, &format!("{target_host}/team/pinned:1")],
            )
        });
        let pull = scope.spawn(|| {
            run_isolated(
                home.path(),
                &[
                    "pull",
                    file.to_str().unwrap(),
                    "--registry",
                    &target_host,
                    "--format",
                    "json",
                ],
            )
        });
        (copy.join().unwrap(), pull.join().unwrap())
    });

    assert_eq!(copied.code(), 1, "{}", copied.all());
    let stderr = text(&copied.stderr);
    assert!(
        stderr.contains(&pinned)
            && stderr.contains(&format!("expected {digest}"))
            && stderr.contains("content has digest"),
        "{stderr}"
    );

    assert_eq!(pulled.code(), 1, "{}", pulled.all());
    let report = pulled.json();
    assert_eq!(report["images"][0]["status"], "FAILED", "{report}");
    let message = report["images"][0]["message"].as_str().unwrap();
    assert!(message.contains(&format!("expected {digest}")), "{message}");
    assert_eq!(writes_logged(&target), 0, "{}", target.log());
}

#[test]
fn a_closed_stdout_is_not_a_panic() {
    let Some(target) = Registry::try_start() else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    // More output than a pipe buffers, so the writer meets the closed pipe whatever the timing.
    let entries: Vec<String> = (0..3_000).map(|index| format!("tool{index}:1")).collect();
    let file = write_manifest(home.path(), "many.json", &entries);
    let invalid: Vec<String> = (0..3_000).map(|index| format!("Tool{index}:1")).collect();
    let invalid_file = write_manifest(home.path(), "invalid.json", &invalid);
    let target_host = target.host();
    for args in [
        vec!["plan", file.to_str().unwrap(), "--registry", ECR],
        vec![
            "pull",
            invalid_file.to_str().unwrap(),
            "--registry",
            &target_host,
            "--format",
            "json",
        ],
    ] {
        let command = isolated(home.path()).args(&args);
        let mut child = command
            .command()
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the binary starts");
        // The reader goes away, as `| head -1` does.
        drop(child.stdout.take());
        let output = OmxOutput::of(&command, child.wait_with_output().unwrap());
        output.code();
    }
}
