//! A real moto server (AWS API emulator) on a free loopback port.

use std::fmt;
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::http::{http_request, HttpResponse};
use crate::process::{NotReady, ServerProcess};
use crate::tools::{free_port, require, Tool};

/// The account id moto uses unless told otherwise.
pub const MOTO_ACCOUNT_ID: &str = "123456789012";

// moto imports every service backend at startup, which takes a few seconds on a busy machine.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const PORT_ATTEMPTS: usize = 5;

/// The registry password in moto's ECR `GetAuthorizationToken` answer for `account`.
///
/// moto returns base64 of `AWS:<account>-auth-token` (checked by this crate's tests against a
/// running moto), so a [`crate::Registry`] built with
/// `.basic_auth("AWS", moto_ecr_password(MOTO_ACCOUNT_ID))` accepts the token moto hands out.
pub fn moto_ecr_password(account: &str) -> String {
    format!("{account}-auth-token")
}

/// A running `moto_server`; dropping it kills the process by PID and reaps it.
pub struct Moto {
    process: ServerProcess,
    port: u16,
    _dir: TempDir,
}

impl fmt::Debug for Moto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Moto")
            .field("endpoint", &self.endpoint())
            .field("pid", &self.process.pid())
            .finish()
    }
}

impl Moto {
    /// Starts moto on a free port and waits until it answers; panics if it cannot (with its
    /// log), or with a hint to run `scripts/install-deps` when `moto_server` is missing.
    pub fn start() -> Moto {
        Moto::try_start().expect(
            "moto_server is missing and OMX_TESTENV_SKIP=1 is set: use Moto::try_start to skip",
        )
    }

    /// Like [`Moto::start`] but returns `None` when `moto_server` is missing and
    /// `OMX_TESTENV_SKIP=1` is set.
    pub fn try_start() -> Option<Moto> {
        let paths = require("a moto test server", &[Tool::MotoServer])?;
        let moto_bin = &paths[0];
        let dir = tempfile::Builder::new()
            .prefix("omx-moto-")
            .tempdir()
            .expect("cannot create a temp dir for moto");
        let log_path = dir.path().join("moto.log");
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let mut command = Command::new(moto_bin);
            command
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                // Keep the caller's real AWS settings away from the emulator.
                .env_remove("AWS_PROFILE")
                .env_remove("AWS_ENDPOINT_URL")
                .env("AWS_DEFAULT_REGION", "us-east-1");
            let mut process =
                ServerProcess::spawn(command, &log_path).expect("cannot spawn moto_server");
            let host = format!("127.0.0.1:{port}");
            match process.wait_ready(READY_TIMEOUT, || moto_answers(&host)) {
                Ok(()) => {
                    return Some(Moto {
                        process,
                        port,
                        _dir: dir,
                    })
                }
                Err(NotReady::Exited(_)) if process.log().contains("Address already in use") => {
                    continue
                }
                Err(NotReady::Exited(status)) => panic!(
                    "moto_server on port {port} exited ({status}) before answering; log:\n{}",
                    process.log()
                ),
                Err(NotReady::TimedOut) => panic!(
                    "moto_server on port {port} did not answer within {READY_TIMEOUT:?}; log:\n{}",
                    process.log()
                ),
            }
        }
        panic!("moto_server could not bind a free port after {PORT_ATTEMPTS} attempts");
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL` or an SDK endpoint override.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.host())
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The process id of the `moto_server` child.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// moto's output so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Forgets every resource in every emulated service (`POST /moto-api/reset`).
    pub fn reset(&self) {
        self.admin_post("/moto-api/reset", b"");
    }

    /// Makes Step Functions actually run state machines (moto only records executions by
    /// default): `POST /moto-api/config` with `{"stepfunctions": {"execute_state_machine": true}}`.
    pub fn enable_stepfunctions_execution(&self) {
        self.admin_post(
            "/moto-api/config",
            br#"{"stepfunctions": {"execute_state_machine": true}}"#,
        );
    }

    /// Sends a request to moto and returns the response; panics only on a transport error.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        http_request(&self.host(), method, path, headers, body)
            .unwrap_or_else(|error| panic!("{method} {} {path} failed: {error}", self.endpoint()))
    }

    /// One JSON-protocol AWS call, as the SDK would send it: `target` is the `X-Amz-Target`
    /// (`AmazonEC2ContainerRegistry_V20150921.CreateRepository`), `signing_service` the service
    /// in the credential scope (`ecr`, `codebuild`, `states`), which is how moto tells services
    /// apart (it checks no signature). Panics unless moto answers 200; returns its JSON answer.
    pub fn aws_json_call(
        &self,
        signing_service: &str,
        target: &str,
        body: serde_json::Value,
    ) -> serde_json::Value {
        // Step Functions speaks awsJson1_0; ECR and CodeBuild awsJson1_1.
        let content_type = if signing_service == "states" {
            "application/x-amz-json-1.0"
        } else {
            "application/x-amz-json-1.1"
        };
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/{signing_service}/aws4_request, SignedHeaders=host, Signature=0"
        );
        let response = self.request(
            "POST",
            "/",
            &[
                ("X-Amz-Target", target),
                ("Content-Type", content_type),
                ("Authorization", authorization.as_str()),
            ],
            body.to_string().as_bytes(),
        );
        assert_eq!(response.status, 200, "{target}: {}", response.text());
        serde_json::from_str(&response.text()).expect("moto answers JSON")
    }

    /// One ECR API call ([`Moto::aws_json_call`]), e.g. `ecr_call("CreateRepository", ...)`.
    pub fn ecr_call(&self, operation: &str, body: serde_json::Value) -> serde_json::Value {
        self.aws_json_call(
            "ecr",
            &format!("AmazonEC2ContainerRegistry_V20150921.{operation}"),
            body,
        )
    }

    /// Names of every ECR repository moto holds, sorted (as [`crate::EcrStandIn`] lists its own).
    pub fn repository_names(&self) -> Vec<String> {
        let listed = self.ecr_call("DescribeRepositories", serde_json::json!({}));
        let mut names: Vec<String> = listed["repositories"]
            .as_array()
            .expect("DescribeRepositories answers a repositories list")
            .iter()
            .map(|r| {
                r["repositoryName"]
                    .as_str()
                    .expect("repositoryName")
                    .to_string()
            })
            .collect();
        names.sort();
        names
    }

    fn admin_post(&self, path: &str, body: &[u8]) {
        let response = self.request("POST", path, &[("Content-Type", "application/json")], body);
        assert!(
            (200..300).contains(&response.status),
            "moto POST {path} answered {}: {}",
            response.status,
            response.text()
        );
    }
}

fn moto_answers(host: &str) -> bool {
    http_request(host, "GET", "/moto-api/data.json", &[], &[])
        .is_ok_and(|response| response.status == 200)
}
