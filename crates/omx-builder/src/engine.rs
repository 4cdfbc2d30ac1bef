//! The programs that build: buildah or Docker on this machine, CodeBuild in AWS.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use omx_aws::CodeBuild;
use tokio::process::Command;

use crate::login::Login;

/// The CodeBuild project used when none is named.
pub const DEFAULT_CODEBUILD_PROJECT: &str = "omx-container-build";

/// How images are built.
#[derive(Debug, Clone)]
pub enum Engine {
    Buildah(Buildah),
    Docker(Docker),
    CodeBuild(CodeBuildEngine),
}

impl Engine {
    /// `buildah`, `docker` or `codebuild`.
    pub fn name(&self) -> &'static str {
        match self {
            Engine::Buildah(_) => "buildah",
            Engine::Docker(_) => "docker",
            Engine::CodeBuild(_) => "codebuild",
        }
    }

    /// The local engine to use when none is named: buildah when it is installed (no daemon,
    /// no root-equivalent socket), else Docker when its daemon answers.
    pub async fn detect() -> Option<Engine> {
        if let Some(buildah) = Buildah::find() {
            return Some(Engine::Buildah(buildah));
        }
        Docker::find().await.map(Engine::Docker)
    }
}

/// buildah, run daemonless with chroot isolation and the vfs storage driver, which work as root
/// in a container and on any file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buildah {
    pub program: PathBuf,
    /// A storage folder of our own (`root/` and `run/` inside): the vfs driver cannot share the
    /// system store when that uses overlay. `None` uses buildah's configured store.
    pub storage: Option<PathBuf>,
}

impl Buildah {
    /// buildah from `PATH`, with no storage folder chosen yet.
    pub fn find() -> Option<Buildah> {
        find_program("buildah").map(|program| Buildah {
            program,
            storage: None,
        })
    }

    fn command(&self, login: &Login) -> Command {
        let mut command = Command::new(&self.program);
        if let Some(storage) = &self.storage {
            command
                .arg("--root")
                .arg(storage.join("root"))
                .arg("--runroot")
                .arg(storage.join("run"));
        }
        command
            .args(["--storage-driver", "vfs"])
            .env("CONTAINERS_REGISTRIES_CONF", login.registries_conf())
            .env_remove("REGISTRY_AUTH_FILE");
        command
    }

    fn add_login_flags(command: &mut Command, login: &Login) {
        command.arg("--authfile").arg(login.auth_file());
        if let Some(certs) = login.cert_dir() {
            command.arg("--cert-dir").arg(certs);
        }
    }

    /// `buildah bud` (base images pulled with the login) then `buildah push`.
    pub(crate) fn steps(&self, build: &LocalBuild<'_>, login: &Login) -> [Step; 2] {
        let mut bud = self.command(login);
        bud.args([
            "bud",
            "--isolation",
            "chroot",
            "--layers",
            "--format",
            "docker",
        ]);
        Self::add_login_flags(&mut bud, login);
        build.add_build_flags(&mut bud);
        let mut push = self.command(login);
        push.arg("push");
        Self::add_login_flags(&mut push, login);
        push.arg(build.image)
            .arg(format!("docker://{}", build.image));
        [
            Step {
                name: "buildah bud",
                command: bud,
            },
            Step {
                name: "buildah push",
                command: push,
            },
        ]
    }
}

/// The Docker CLI and its daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Docker {
    pub program: PathBuf,
}

impl Docker {
    /// docker from `PATH` when `docker info` says its daemon answers.
    pub async fn find() -> Option<Docker> {
        let program = find_program("docker")?;
        let answered = Command::new(&program)
            .arg("info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .is_ok_and(|status| status.success());
        answered.then_some(Docker { program })
    }

    fn command(&self, login: &Login) -> Command {
        let mut command = Command::new(&self.program);
        command.env("DOCKER_CONFIG", login.docker_config_dir());
        command
    }

    /// `docker build` (base images pulled with the login) then `docker push`. The daemon decides
    /// which registries it reaches over plain HTTP (loopback ones by default).
    pub(crate) fn steps(&self, build: &LocalBuild<'_>, login: &Login) -> [Step; 2] {
        let mut docker_build = self.command(login);
        docker_build.arg("build");
        build.add_build_flags(&mut docker_build);
        let mut push = self.command(login);
        push.arg("push").arg(build.image);
        [
            Step {
                name: "docker build",
                command: docker_build,
            },
            Step {
                name: "docker push",
                command: push,
            },
        ]
    }
}

/// Builds run by an AWS CodeBuild project on bundles in S3.
#[derive(Debug, Clone)]
pub struct CodeBuildEngine {
    pub client: CodeBuild,
    /// An existing project with privileged mode (Docker) and a role that can read the bundles
    /// and push to the ECR repositories.
    pub project: String,
    /// How often the build's state is asked for.
    pub poll_interval: Duration,
    /// Run the project's own buildspec (it gets the same environment variables) instead of the
    /// one this tool sends.
    pub project_buildspec: bool,
}

/// One local build: everything buildah or docker is told.
#[derive(Debug)]
pub(crate) struct LocalBuild<'a> {
    pub context: &'a Path,
    pub dockerfile: &'a Path,
    /// The image name the build is tagged and pushed as (`host/repository:tag`).
    pub image: &'a str,
    pub labels: &'a [(String, String)],
    pub build_args: &'a BTreeMap<String, String>,
    pub platform: &'a str,
}

impl LocalBuild<'_> {
    /// The flags `buildah bud` and `docker build` share, then the context.
    fn add_build_flags(&self, command: &mut Command) {
        command.arg("--platform").arg(self.platform);
        for (name, value) in self.labels {
            command.arg("--label").arg(format!("{name}={value}"));
        }
        for (name, value) in self.build_args {
            command.arg("--build-arg").arg(format!("{name}={value}"));
        }
        command
            .arg("-f")
            .arg(self.dockerfile)
            .arg("-t")
            .arg(self.image)
            .arg(self.context);
    }
}

/// One program run of a build.
#[derive(Debug)]
pub(crate) struct Step {
    pub name: &'static str,
    pub command: Command,
}

impl Step {
    /// The command line as the log shows it (it never holds a credential).
    pub(crate) fn command_line(&self) -> String {
        let command = self.command.as_std();
        std::iter::once(command.get_program())
            .chain(command.get_args())
            .map(shell_word)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs the step with its output appended to `log`; `Ok(Err(status))` when it ran and failed.
    pub(crate) async fn run(mut self, log: &File) -> std::io::Result<Result<(), String>> {
        writeln!(&*log, "$ {}", self.command_line())?;
        let status = self
            .command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log.try_clone()?)
            .kill_on_drop(true)
            .status()
            .await?;
        writeln!(&*log, "# {}: {status}", self.name)?;
        Ok(if status.success() {
            Ok(())
        } else {
            Err(status.to_string())
        })
    }
}

fn shell_word(word: &OsStr) -> String {
    let text = word.to_string_lossy();
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,+%".contains(&b));
    if plain {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

fn find_program(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build<'a>(
        labels: &'a [(String, String)],
        args: &'a BTreeMap<String, String>,
    ) -> LocalBuild<'a> {
        LocalBuild {
            context: Path::new("/work/ctx"),
            dockerfile: Path::new("/work/ctx/Dockerfile"),
            image: "127.0.0.1:5000/ns/tool:1",
            labels,
            build_args: args,
            platform: "linux/amd64",
        }
    }

    #[test]
    fn buildah_builds_with_chroot_vfs_and_the_authfile_then_pushes() {
        let login = Login::write(&[], &[], &[]).unwrap();
        let labels = [("org.x".to_string(), "sha256:1".to_string())];
        let args = BTreeMap::from([("GREETING".to_string(), "hello world".to_string())]);
        let buildah = Buildah {
            program: PathBuf::from("/usr/bin/buildah"),
            storage: Some(PathBuf::from("/store")),
        };
        let steps = buildah.steps(&build(&labels, &args), &login);
        let auth = login.auth_file().display().to_string();
        let global =
            "/usr/bin/buildah --root /store/root --runroot /store/run --storage-driver vfs";
        assert_eq!(
            steps[0].command_line(),
            format!(
                "{global} bud --isolation chroot --layers --format docker --authfile {auth} \
                 --platform linux/amd64 --label org.x=sha256:1 --build-arg 'GREETING=hello world' \
                 -f /work/ctx/Dockerfile -t 127.0.0.1:5000/ns/tool:1 /work/ctx"
            )
        );
        assert_eq!(
            steps[1].command_line(),
            format!(
                "{global} push --authfile {auth} 127.0.0.1:5000/ns/tool:1 \
                 docker://127.0.0.1:5000/ns/tool:1"
            )
        );
        let env: Vec<_> = steps[0].command.as_std().get_envs().collect();
        assert!(env.contains(&(
            OsStr::new("CONTAINERS_REGISTRIES_CONF"),
            Some(login.registries_conf().as_os_str())
        )));

        // Extra CA certificates reach both steps.
        let ca = tempfile::NamedTempFile::new().unwrap();
        let login = Login::write(&[], &[], &[ca.path().to_path_buf()]).unwrap();
        let cert_dir = login.cert_dir().unwrap().display().to_string();
        for step in buildah.steps(&build(&labels, &args), &login) {
            assert!(
                step.command_line().contains(&format!(
                    "--authfile {} --cert-dir {cert_dir} ",
                    login.auth_file().display()
                )),
                "{}",
                step.command_line()
            );
        }
    }

    #[test]
    fn docker_builds_and_pushes_with_a_private_config() {
        let login = Login::write(&[], &[], &[]).unwrap();
        let args = BTreeMap::new();
        let docker = Docker {
            program: PathBuf::from("docker"),
        };
        let steps = docker.steps(&build(&[], &args), &login);
        assert_eq!(
            steps[0].command_line(),
            "docker build --platform linux/amd64 -f /work/ctx/Dockerfile \
             -t 127.0.0.1:5000/ns/tool:1 /work/ctx"
        );
        assert_eq!(
            steps[1].command_line(),
            "docker push 127.0.0.1:5000/ns/tool:1"
        );
        let env: Vec<_> = steps[1].command.as_std().get_envs().collect();
        assert_eq!(
            env,
            [(
                OsStr::new("DOCKER_CONFIG"),
                Some(login.docker_config_dir().as_os_str())
            )]
        );
    }

    #[tokio::test]
    async fn steps_log_their_command_output_and_status() {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("build.log");
        let log = File::create(&log_path).unwrap();
        let mut command = Command::new("sh");
        command.args(["-c", "echo out; echo err >&2; exit 3"]);
        let step = Step {
            name: "failing step",
            command,
        };
        let outcome = step.run(&log).await.unwrap();
        assert_eq!(outcome, Err("exit status: 3".to_string()));
        let text = std::fs::read_to_string(&log_path).unwrap();
        assert!(
            text.starts_with("$ sh -c 'echo out; echo err >&2; exit 3'\n"),
            "{text}"
        );
        assert!(text.contains("out\nerr\n"), "{text}");
        assert!(text.ends_with("# failing step: exit status: 3\n"), "{text}");
    }
}
