//! The deployable artifacts `infra/scripts/build-artifacts` builds, found and run as Lambda runs
//! them: [`Artifacts`] finds `<target>/lambda/<name>/bootstrap.zip` and the CLI (or says why the
//! test skips), [`Bootstrap`] starts an unpacked `bootstrap` in its task root with Lambda's
//! environment against a [`RuntimeApi`] stand-in.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use omx_aws::testing::REGION;
use omx_testenv::{workspace_root, Moto, MOTO_ACCOUNT_ID};
use serde_json::Value;

use crate::runtime_api::{Report, RuntimeApi};

pub const FUNCTIONS: [&str; 3] = ["omx-pull-image", "omx-build-prepare", "omx-apply-policy"];
pub const CLI: &str = "omx-ecr-helper";
/// Per invocation: a token from moto and a small copy between local registries.
const INVOCATION_TIMEOUT: Duration = Duration::from_secs(120);

/// Where build-artifacts puts its output, or `None` (the test skips) when something is missing.
pub struct Artifacts {
    target_dir: PathBuf,
}

impl Artifacts {
    pub fn find() -> Option<Artifacts> {
        let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
            // A relative CARGO_TARGET_DIR is relative to where cargo ran: the workspace root.
            Some(dir) => workspace_root().join(dir),
            None => workspace_root().join("target"),
        };
        let artifacts = Artifacts { target_dir };
        let missing: Vec<String> = FUNCTIONS
            .iter()
            .map(|name| artifacts.zip(name))
            .chain([artifacts.cli()])
            .filter(|path| !path.is_file())
            .map(|path| path.display().to_string())
            .collect();
        if missing.is_empty() {
            return Some(artifacts);
        }
        let reason = format!(
            "the deployable artifacts are not built (missing {}); run infra/scripts/build-artifacts",
            missing.join(", ")
        );
        if std::env::var("OMX_REQUIRE_LAMBDA_ARTIFACTS").is_ok_and(|value| value == "1") {
            panic!("{reason} (OMX_REQUIRE_LAMBDA_ARTIFACTS=1)");
        }
        eprintln!("skipped: {reason}");
        None
    }

    pub fn zip(&self, function: &str) -> PathBuf {
        self.target_dir
            .join("lambda")
            .join(function)
            .join("bootstrap.zip")
    }

    pub fn cli(&self) -> PathBuf {
        self.target_dir
            .join("x86_64-unknown-linux-gnu")
            .join("release")
            .join(CLI)
    }

    /// Unpacks `function`'s zip as Lambda does, into a fresh directory (Lambda's task root).
    pub fn unpack(&self, function: &str) -> tempfile::TempDir {
        let path = self.zip(function);
        let mut archive = zip::ZipArchive::new(File::open(&path).unwrap())
            .unwrap_or_else(|e| panic!("{} is not a zip: {e}", path.display()));
        let names: Vec<String> = archive
            .file_names()
            .map(|name| name.unwrap().into_owned())
            .collect();
        assert_eq!(
            names,
            ["bootstrap"],
            "{} holds only the bootstrap",
            path.display()
        );
        let root = tempfile::Builder::new()
            .prefix(&format!("{function}-task-root-"))
            .tempdir()
            .unwrap();
        let mut entry = archive.by_name("bootstrap").unwrap();
        let mode = entry.unix_mode().expect("the zip records a Unix mode");
        assert_eq!(mode & 0o111, 0o111, "bootstrap is executable ({mode:o})");
        let unpacked = root.path().join("bootstrap");
        io::copy(&mut entry, &mut File::create(&unpacked).unwrap()).unwrap();
        fs::set_permissions(&unpacked, fs::Permissions::from_mode(mode & 0o777)).unwrap();
        root
    }
}

/// A `bootstrap` running as Lambda starts it: in its task root, with only Lambda's environment
/// (plus the endpoints of the emulators standing in for AWS). Killed when dropped.
pub struct Bootstrap {
    _task_root: tempfile::TempDir,
    child: Child,
    output: Arc<Mutex<Vec<u8>>>,
}

impl Bootstrap {
    pub fn start(
        artifacts: &Artifacts,
        function: &str,
        api: &RuntimeApi,
        moto: &Moto,
        extra_env: &[(&str, String)],
    ) -> Bootstrap {
        let task_root = artifacts.unpack(function);
        let mut command = Command::new(task_root.path().join("bootstrap"));
        command
            .current_dir(task_root.path())
            .env_clear()
            .envs([
                ("AWS_LAMBDA_RUNTIME_API", api.address().to_string()),
                ("AWS_LAMBDA_FUNCTION_NAME", function.to_string()),
                ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024".to_string()),
                ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_string()),
                (
                    "AWS_LAMBDA_LOG_GROUP_NAME",
                    format!("/aws/lambda/{function}"),
                ),
                (
                    "AWS_LAMBDA_LOG_STREAM_NAME",
                    "2026/01/01/[$LATEST]0".to_string(),
                ),
                ("LAMBDA_TASK_ROOT", task_root.path().display().to_string()),
                ("_HANDLER", "bootstrap".to_string()),
                ("AWS_REGION", REGION.to_string()),
                ("AWS_DEFAULT_REGION", REGION.to_string()),
                ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE".to_string()),
                (
                    "AWS_SECRET_ACCESS_KEY",
                    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_string(),
                ),
                ("AWS_SESSION_TOKEN", "session-token".to_string()),
                ("AWS_ENDPOINT_URL", moto.endpoint()),
                // What the stacks' RustFunction sets.
                ("OMX_REGION", REGION.to_string()),
                ("OMX_ACCOUNT", MOTO_ACCOUNT_ID.to_string()),
                ("RUST_LOG", "info".to_string()),
            ])
            .envs(
                extra_env
                    .iter()
                    .map(|(name, value)| (*name, value.as_str())),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the {function} bootstrap: {e}"));
        let output = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        for mut stream in [
            Box::new(stdout) as Box<dyn io::Read + Send>,
            Box::new(stderr),
        ] {
            let output = Arc::clone(&output);
            thread::spawn(move || {
                let mut buffer = [0; 4096];
                while let Ok(read @ 1..) = stream.read(&mut buffer) {
                    output.lock().unwrap().extend_from_slice(&buffer[..read]);
                }
            });
        }
        Bootstrap {
            _task_root: task_root,
            child,
            output,
        }
    }

    pub fn logs(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// The function's next report; fails with its logs when it exits or takes too long.
    pub fn next_report(&mut self, api: &RuntimeApi) -> Report {
        let started = Instant::now();
        while started.elapsed() < INVOCATION_TIMEOUT {
            if let Some(report) = api.next_report(Duration::from_millis(200)) {
                return report;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                // Give the log readers a moment to drain the pipes.
                thread::sleep(Duration::from_millis(100));
                panic!(
                    "the bootstrap exited ({status}); its output:\n{}",
                    self.logs()
                );
            }
        }
        panic!(
            "no answer within {INVOCATION_TIMEOUT:?}; the bootstrap's output:\n{}",
            self.logs()
        );
    }

    pub fn response(&mut self, api: &RuntimeApi, expected_id: &str) -> Value {
        match self.next_report(api) {
            Report::Response { request_id, body } if request_id == expected_id => body,
            other => panic!(
                "expected the response to {expected_id}, got {other:?}; output:\n{}",
                self.logs()
            ),
        }
    }

    pub fn error(&mut self, api: &RuntimeApi, expected_id: &str) -> (Option<String>, Value) {
        match self.next_report(api) {
            Report::Error {
                request_id,
                error_type,
                body,
            } if request_id == expected_id => (error_type, body),
            other => panic!(
                "expected the error of {expected_id}, got {other:?}; output:\n{}",
                self.logs()
            ),
        }
    }

    /// An invocation's error does not end the process: it goes back to waiting for work.
    pub fn assert_still_serving(&mut self) {
        thread::sleep(Duration::from_millis(300));
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "the bootstrap exited after its invocations; output:\n{}",
            self.logs()
        );
    }
}

impl Drop for Bootstrap {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
