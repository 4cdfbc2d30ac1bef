//! Locating the external programs the test environment runs.

use std::env;
use std::path::{Path, PathBuf};

/// An external program the test environment needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// CNCF distribution registry (`docker-registry` Debian package).
    DockerRegistry,
    /// `htpasswd` from apache2-utils, to write bcrypt password files.
    Htpasswd,
    /// `openssl`, to make the self-signed CA and server certificate.
    Openssl,
    /// `skopeo`, to push image fixtures.
    Skopeo,
    /// `moto_server` from the project's Python venv.
    MotoServer,
}

impl Tool {
    /// The executable's file name.
    pub fn program(self) -> &'static str {
        match self {
            Tool::DockerRegistry => "docker-registry",
            Tool::Htpasswd => "htpasswd",
            Tool::Openssl => "openssl",
            Tool::Skopeo => "skopeo",
            Tool::MotoServer => "moto_server",
        }
    }
}

/// The workspace root (two levels above this crate's manifest directory).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .ancestors()
        .nth(2)
        .unwrap_or(manifest_dir)
        .to_path_buf()
}

/// Where `tool` is, or `None` when it is not installed.
///
/// `moto_server` is looked up in `$OMX_MOTO_SERVER`, then in the venv that
/// `scripts/install-deps` creates (`<workspace>/.testenv/venv/bin/moto_server`), then on `PATH`.
/// Everything else is looked up on `PATH`.
pub fn find_tool(tool: Tool) -> Option<PathBuf> {
    if tool == Tool::MotoServer {
        if let Some(explicit) = env::var_os("OMX_MOTO_SERVER") {
            let explicit = PathBuf::from(explicit);
            return is_executable(&explicit).then_some(explicit);
        }
        let venv = workspace_root().join(".testenv/venv/bin/moto_server");
        if is_executable(&venv) {
            return Some(venv);
        }
    }
    search_path(tool.program())
}

fn search_path(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// True when `OMX_TESTENV_SKIP=1`: tests skip instead of failing when a tool is missing.
pub(crate) fn skip_when_missing() -> bool {
    env::var("OMX_TESTENV_SKIP").is_ok_and(|value| value == "1")
}

/// Resolves `tools` for `what`: `Some(paths)`, `None` (after printing a skip line) when one is
/// missing and skipping is allowed, otherwise a panic that says how to install it.
pub(crate) fn require(what: &str, tools: &[Tool]) -> Option<Vec<PathBuf>> {
    require_with(what, tools, find_tool, skip_when_missing())
}

fn require_with(
    what: &str,
    tools: &[Tool],
    find: impl Fn(Tool) -> Option<PathBuf>,
    skip: bool,
) -> Option<Vec<PathBuf>> {
    let found: Result<Vec<PathBuf>, Tool> =
        tools.iter().map(|&tool| find(tool).ok_or(tool)).collect();
    match found {
        Ok(paths) => Some(paths),
        Err(missing) if skip => {
            eprintln!(
                "skipped: {what} needs `{}`, which is not installed (OMX_TESTENV_SKIP=1)",
                missing.program()
            );
            None
        }
        Err(missing) => panic!(
            "{what} needs `{}`, which is not installed: run scripts/install-deps \
             (or set OMX_TESTENV_SKIP=1 to skip tests that need it)",
            missing.program()
        ),
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; the caller retries if it is taken again).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("cannot bind an ephemeral port on 127.0.0.1")
}

/// Runs `openssl` once per argument list, in `dir`, panicking with openssl's own message when a
/// step fails (test keys and certificates are made this way).
pub(crate) fn run_openssl_steps(openssl: &Path, dir: &Path, steps: &[&[&str]]) {
    for args in steps {
        let output = std::process::Command::new(openssl)
            .args(*args)
            .current_dir(dir)
            .output()
            .expect("cannot run openssl");
        assert!(
            output.status.success(),
            "openssl {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only_openssl(tool: Tool) -> Option<PathBuf> {
        (tool == Tool::Openssl).then(|| PathBuf::from("/usr/bin/openssl"))
    }

    #[test]
    fn finds_every_tool_in_order() {
        let found = require_with("x", &[Tool::Openssl, Tool::Openssl], only_openssl, false);
        assert_eq!(found, Some(vec![PathBuf::from("/usr/bin/openssl"); 2]));
    }

    #[test]
    fn a_missing_tool_skips_when_allowed() {
        assert_eq!(
            require_with("x", &[Tool::Openssl, Tool::Skopeo], only_openssl, true),
            None
        );
    }

    #[test]
    #[should_panic(
        expected = "needs `moto_server`, which is not installed: run scripts/install-deps"
    )]
    fn a_missing_tool_panics_with_the_install_hint() {
        require_with(
            "a moto test server",
            &[Tool::MotoServer],
            only_openssl,
            false,
        );
    }

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        assert!(workspace_root()
            .join("crates/omx-testenv/Cargo.toml")
            .is_file());
    }
}
