//! `omx-ecr-helper submit` (the built CLI) following executions of the deployed state machines:
//! [`StepFunctionsApi`] runs `infra/test/step-functions-api.ts`, a stand-in for the Step
//! Functions API whose executions are the synthesized definitions run locally with the same
//! Lambdas and CodeBuild stand-in as [`super::run_state_machine`].

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use omx_aws::testing::REGION;
use omx_testenv::{OmxCommand, OmxOutput};
use serde_json::{json, Value};

use super::{node_script, services_request, Lambdas, LocalCodeBuild};
use crate::artifacts::Artifacts;

/// The Step Functions API stand-in; when dropped, its stdin is closed, which ends it (killed by
/// its process id if it has not ended within 10 s).
pub struct StepFunctionsApi {
    child: Child,
    endpoint: String,
}

impl StepFunctionsApi {
    pub fn start(
        infra: &Path,
        app_config: &Value,
        lambdas: &Lambdas,
        codebuild: &LocalCodeBuild,
    ) -> StepFunctionsApi {
        let request = services_request(app_config, lambdas, codebuild);
        let mut child = node_script(
            infra,
            "test/step-functions-api.ts",
            &request,
            Stdio::inherit(),
        );
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let endpoint = lines
            .find_map(|line| {
                let line = line.ok()?;
                serde_json::from_str::<Value>(&line).ok()?["endpoint"]
                    .as_str()
                    .map(str::to_string)
            })
            .expect("step-functions-api.ts prints its endpoint");
        StepFunctionsApi { child, endpoint }
    }

    /// Runs `omx-ecr-helper submit <args>` against this stand-in, as a user's shell would with
    /// credentials for the account and region.
    pub fn submit(&self, artifacts: &Artifacts, manifest: Value, args: &[&str]) -> OmxOutput {
        let home = tempfile::tempdir().unwrap();
        let file = home.path().join("manifest.json");
        std::fs::write(&file, json!({ "manifest": manifest }).to_string()).unwrap();
        OmxCommand::new(artifacts.cli())
            .arg("submit")
            .arg(&file)
            .args(["--poll-seconds", "1", "--format", "json"])
            .args(args)
            .env_clear()
            .env("HOME", home.path())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_REGION", REGION)
            .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
            .env(
                "AWS_SECRET_ACCESS_KEY",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
            // The SDK's endpoint variable for Step Functions (service id SFN).
            .env("AWS_ENDPOINT_URL_SFN", &self.endpoint)
            .run()
    }
}

impl Drop for StepFunctionsApi {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `(input, status)` of each image of a `submit --format json` report.
pub fn reported(output: &OmxOutput) -> Vec<(String, String)> {
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "submit printed no JSON report ({e}); stderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    report["images"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|image| {
            let text = |key: &str| image[key].as_str().unwrap_or_default().to_string();
            (text("input"), text("status"))
        })
        .collect()
}
