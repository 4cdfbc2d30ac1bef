//! The serverless stack's state machines executed as deployed, with the real Lambdas behind them.
//!
//! [`Lambdas`] starts the built `bootstrap` of each function (two execution environments each,
//! as Lambda scales a function out) against a [`RuntimeApi`] stand-in that also serves the
//! function's Lambda `Invoke` API. [`run_state_machine`] then runs `infra/test/run-state-machine.ts`:
//! it synthesizes the CDK app, takes the state machine's definition as CloudFormation deploys it,
//! and executes it unmodified in aws-local-stepfunctions (an Amazon States Language interpreter),
//! its `lambda:invoke` tasks calling those Invoke APIs and its `codebuild:startBuild.sync` tasks
//! running the project's buildspec locally (see `infra/test/local-execution.ts` for what the
//! interpreter does not do). Every AWS call a function or a build makes goes through a recorder
//! ([`iam`] checks them against the template's roles).

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use omx_aws::testing::REGION;
use omx_testenv::aws_recorder::AwsCallRecorder;
use omx_testenv::{workspace_root, FaultProxy, Moto, Registry};
use serde_json::{json, Value};

use crate::artifacts::{Artifacts, Bootstrap};
use crate::runtime_api::RuntimeApi;

pub mod iam;
pub mod submit;

/// What one program (a function, a CodeBuild project) did to AWS: its AWS API calls (through a
/// recorder in front of moto) and its ECR registry API requests (through a recording proxy).
struct Recorded {
    aws: AwsCallRecorder,
    registry: FaultProxy,
}

impl Recorded {
    fn start(moto: &Moto, ecr_registry: &Registry) -> Recorded {
        Recorded {
            aws: AwsCallRecorder::start(&moto.host()),
            registry: FaultProxy::start(ecr_registry),
        }
    }

    fn needed(&self) -> Vec<iam::Needed> {
        let mut needed = iam::needed_by_calls(&self.aws.calls());
        needed.extend(iam::needed_by_registry_requests(&self.registry.requests()));
        needed
    }
}

/// Panics listing every permission `program` needed that its role in `policies` does not grant.
fn assert_granted(program: &str, recorded: &Recorded, policies: &Value) {
    let missing = iam::not_granted(&recorded.needed(), &policies[program]);
    let listed: Vec<String> = missing
        .iter()
        .map(|need| format!("{} on {}", need.action, need.resource))
        .collect();
    assert!(
        missing.is_empty(),
        "the role of {program} lacks: {}",
        listed.join("; ")
    );
}

/// Execution environments started per function: more than one, so that the Map's concurrent
/// items reach the function concurrently, as they do on Lambda.
const INSTANCES_PER_FUNCTION: usize = 2;

/// The functions behind one state machine, each a real `bootstrap` serving an Invoke API.
pub struct Lambdas {
    apis: HashMap<&'static str, RuntimeApi>,
    recorded: HashMap<&'static str, Recorded>,
    instances: Vec<(&'static str, Bootstrap)>,
}

impl Lambdas {
    /// Starts `functions` against moto (`AWS_ENDPOINT_URL`) and `ecr_registry`
    /// (`OMX_ECR_REGISTRY_ENDPOINT`), each through its own recorders, with its extra environment.
    pub fn start(
        artifacts: &Artifacts,
        moto: &Moto,
        ecr_registry: &Registry,
        functions: &[(&'static str, Vec<(&str, String)>)],
    ) -> Lambdas {
        let mut lambdas = Lambdas {
            apis: HashMap::new(),
            recorded: HashMap::new(),
            instances: Vec::new(),
        };
        for (function, extra) in functions {
            let api = RuntimeApi::start(function, Vec::new());
            let recorded = Recorded::start(moto, ecr_registry);
            let mut environment = vec![
                ("AWS_ENDPOINT_URL", recorded.aws.endpoint()),
                ("OMX_ECR_REGISTRY_ENDPOINT", recorded.registry.host()),
            ];
            environment.extend(extra.iter().cloned());
            for _ in 0..INSTANCES_PER_FUNCTION {
                let instance = Bootstrap::start(artifacts, function, &api, moto, &environment);
                lambdas.instances.push((function, instance));
            }
            lambdas.apis.insert(function, api);
            lambdas.recorded.insert(function, recorded);
        }
        lambdas
    }

    /// Panics when a function's role in `policies` (an Execution's) lacks a permission it used.
    pub fn assert_permissions_granted(&self, policies: &Value) {
        for (function, recorded) in &self.recorded {
            assert_granted(function, recorded, policies);
        }
    }

    /// Invokes `function` as EventBridge does (the Invoke API), with `event`; its response.
    pub fn invoke(&self, function: &str, event: &Value) -> Value {
        let endpoint = self.apis[function].invoke_endpoint();
        let host = endpoint.trim_start_matches("http://");
        let path = format!("/2015-03-31/functions/{function}/invocations");
        let body = event.to_string();
        let response = omx_testenv::http_request(host, "POST", &path, &[], body.as_bytes())
            .unwrap_or_else(|e| panic!("Invoke {function}: {e}; functions:\n{}", self.logs()));
        assert_eq!(response.status, 200);
        serde_json::from_slice(&response.body).unwrap()
    }

    /// Every event the state machine passed to `function`, in the order it was invoked.
    pub fn events(&self, function: &str) -> Vec<Value> {
        self.apis[function].invoked_events()
    }

    /// The functions' output, to explain a failed assertion.
    pub fn logs(&self) -> String {
        self.instances
            .iter()
            .map(|(function, instance)| format!("--- {function}\n{}", instance.logs()))
            .collect()
    }

    fn endpoints(&self) -> Value {
        self.apis
            .iter()
            .map(|(function, api)| (function.to_string(), Value::String(api.invoke_endpoint())))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

/// What CodeBuild builds get here instead of an AWS account: the emulators, and a source bundle
/// whose `omx-ecr-helper` is the built CLI pointed at the local registry.
pub struct LocalCodeBuild {
    _directory: tempfile::TempDir,
    cli: PathBuf,
    environment: Value,
    project: &'static str,
    recorded: Recorded,
}

impl LocalCodeBuild {
    /// The source bundle's `omx-ecr-helper` is a wrapper around the release CLI that adds
    /// `--ecr-registry-endpoint <ecr_registry>` after the subcommand (the registry API of ECR is
    /// `docker-registry` here; the CLI has no environment variable for it), and, when
    /// `docker_to_buildah`, swaps `--engine docker` for `--engine buildah`: there is no Docker
    /// daemon here, and buildah (chroot isolation, vfs storage) builds the same Dockerfiles
    /// (its storage in the build's own folder: `--storage-root`).
    pub fn new(
        artifacts: &Artifacts,
        moto: &Moto,
        ecr_registry: &Registry,
        project: &'static str,
        docker_to_buildah: bool,
    ) -> LocalCodeBuild {
        let recorded = Recorded::start(moto, ecr_registry);
        let ecr_registry = recorded.registry.host();
        let directory = tempfile::Builder::new()
            .prefix("omx-codebuild-bundle-")
            .tempdir()
            .unwrap();
        let cli = directory.path().join("omx-ecr-helper");
        // buildah keeps its images in the build's own folder (CodeBuild's HOME is per build here).
        let engine = if docker_to_buildah {
            concat!(
                r#"for arg in "$@"; do shift; [ "$arg" = docker ] && [ "$previous" = --engine ] && arg=buildah; "#,
                r#"set -- "$@" "$arg"; previous="$arg"; done; set -- --storage-root "$HOME/buildah" "$@""#
            )
        } else {
            ""
        };
        let script = format!(
            "#!/bin/bash\nset -e\nsubcommand=\"$1\"; shift\n{engine}\nexec {} \"$subcommand\" --ecr-registry-endpoint {ecr_registry} \"$@\"\n",
            artifacts.cli().display()
        );
        fs::write(&cli, script).unwrap();
        fs::set_permissions(&cli, fs::Permissions::from_mode(0o755)).unwrap();
        // What a CodeBuild container has from its role and region, pointed at moto.
        let environment = json!({
            "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
            "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "AWS_SESSION_TOKEN": "session-token",
            "AWS_ENDPOINT_URL": recorded.aws.endpoint(),
        });
        LocalCodeBuild {
            _directory: directory,
            cli,
            environment,
            project,
            recorded,
        }
    }

    /// Panics when the project's role in `policies` (an Execution's) lacks a permission a build used.
    pub fn assert_permissions_granted(&self, policies: &Value) {
        assert_granted(self.project, &self.recorded, policies);
    }
}

/// One finished execution, as `run-state-machine.ts` reports it.
#[derive(Debug)]
pub struct Execution {
    pub status: String,
    pub output: Value,
    pub error: String,
    pub cause: String,
    /// The CodeBuild builds the execution ran: `{"project", "overrides", "status", "log"}`.
    pub builds: Vec<Value>,
    pub millis: u64,
    /// The IAM statements of each function's (by binary) and project's (by name) role.
    pub policies: Value,
}

/// Whether the CDK app's npm packages are installed; `None` (with the reason printed) when not,
/// and a panic under `OMX_REQUIRE_LAMBDA_ARTIFACTS=1`, as for the artifacts.
pub fn infra_installed() -> Option<PathBuf> {
    let infra = workspace_root().join("infra");
    if infra.join("node_modules/aws-local-stepfunctions").is_dir() {
        return Some(infra);
    }
    let reason = "the CDK app's packages are not installed: run npm ci --prefix infra";
    if std::env::var("OMX_REQUIRE_LAMBDA_ARTIFACTS").is_ok_and(|value| value == "1") {
        panic!("{reason} (OMX_REQUIRE_LAMBDA_ARTIFACTS=1)");
    }
    eprintln!("skipped: {reason}");
    None
}

/// Runs one of the CDK app's TypeScript scripts with `request` as the first line of its stdin,
/// which stays open: the scripts end their work when it closes (`wait_with_output` closes it),
/// and so get to remove their temporary folders. Its stdout is piped, its stderr to `stderr`.
fn node_script(infra: &Path, script: &str, request: &Value, stderr: Stdio) -> Child {
    let mut child = Command::new("node")
        .args(["--import", "tsx", script])
        .current_dir(infra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("node runs (Node.js 20 or newer)");
    let stdin = child.stdin.as_mut().unwrap();
    stdin.write_all(format!("{request}\n").as_bytes()).unwrap();
    child
}

/// The IAM statements of each function's (by binary) and project's (by name) role in the
/// `stack`'s template, synthesized with `app_config`.
pub fn template_policies(infra: &Path, stack: &str, app_config: &Value) -> Value {
    let request = json!({"stack": stack, "appConfig": app_config, "lambdaEndpoints": {},
        "codeBuild": {"cli": "", "environment": {}}});
    let finished = node_script(infra, "test/run-state-machine.ts", &request, Stdio::piped())
        .wait_with_output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&finished.stdout);
    assert!(
        finished.status.success(),
        "run-state-machine.ts failed: {}",
        String::from_utf8_lossy(&finished.stderr)
    );
    serde_json::from_str::<Value>(stdout.lines().last().unwrap_or_default()).unwrap()["policies"]
        .clone()
}

/// The LocalServices of `infra/test/local-execution.ts`: app-config, Lambdas, CodeBuild stand-in.
fn services_request(app_config: &Value, lambdas: &Lambdas, codebuild: &LocalCodeBuild) -> Value {
    json!({
        "appConfig": app_config,
        "lambdaEndpoints": lambdas.endpoints(),
        "codeBuild": {"cli": codebuild.cli, "environment": codebuild.environment},
    })
}

/// Executes the `stack`'s state machine (`puller` or `builder`), synthesized with `app_config`,
/// on `input`.
pub fn run_state_machine(
    infra: &Path,
    stack: &str,
    app_config: &Value,
    input: Value,
    lambdas: &Lambdas,
    codebuild: &LocalCodeBuild,
) -> Execution {
    let mut request = services_request(app_config, lambdas, codebuild);
    request["stack"] = json!(stack);
    request["input"] = input;
    let child = node_script(infra, "test/run-state-machine.ts", &request, Stdio::piped());
    let finished = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&finished.stdout);
    assert!(
        finished.status.success(),
        "run-state-machine.ts failed ({}): {}\n{}\nfunctions:\n{}",
        finished.status,
        String::from_utf8_lossy(&finished.stderr),
        stdout,
        lambdas.logs()
    );
    let answer: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("run-state-machine.ts answered no JSON ({e}): {stdout}"));
    let text = |key: &str| answer[key].as_str().unwrap_or_default().to_string();
    Execution {
        status: text("status"),
        output: answer["output"].clone(),
        error: text("error"),
        cause: text("cause"),
        builds: answer["builds"].as_array().cloned().unwrap_or_default(),
        millis: answer["millis"].as_u64().unwrap_or_default(),
        policies: answer["policies"].clone(),
    }
}
