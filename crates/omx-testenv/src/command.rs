//! Runs a built binary of the workspace (the `omx-ecr-helper` CLI, `omx-fixture`) the way tests
//! need it: hermetic (nothing of the host's AWS, Docker or `OMX_*` set-up leaks in), and with
//! failures that show the whole command, stdout and stderr.
//!
//! The binary's path is passed in: only the crate that builds a binary knows it as
//! `env!("CARGO_BIN_EXE_<name>")` (or as an artifact path, for the Lambda tests).
//!
//! ```no_run
//! # let home = tempfile::tempdir().unwrap();
//! let output = omx_testenv::OmxCommand::new("target/debug/omx-ecr-helper")
//!     .args(["plan", "--help"])
//!     .env("HOME", home.path())
//!     .run();
//! output.assert_code(0);
//! assert!(output.stdout().contains("Usage"));
//! ```

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::Write;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Prefixes of the ambient variables a test run removes: the AWS SDK's (`AWS_PROFILE`,
/// `AWS_REGION`, endpoint and credential variables), Docker's (`DOCKER_CONFIG`, `DOCKER_HOST`)
/// and the CLI's own `OMX_*` defaults. `OMX_TESTENV_*` stays: it tells test support (also inside
/// `omx-fixture`) how to behave when a tool is missing, not what the product does.
const AMBIENT_PREFIXES: [&str; 3] = ["AWS_", "DOCKER_", "OMX_"];
const KEPT_PREFIX: &str = "OMX_TESTENV_";
/// The log filter (a host's `RUST_LOG` would add lines to the stderr tests read) and the cache
/// home (the blob-location cache of `pull`/`copy` would carry what one test's registries held
/// into another's, and into the developer's own cache).
const AMBIENT_NAMES: [&str; 2] = ["RUST_LOG", "XDG_CACHE_HOME"];

/// A binary to run, built up like [`std::process::Command`] but hermetic from the start and
/// printable (every argument and variable set is kept for failure messages).
#[derive(Clone)]
pub struct OmxCommand {
    program: PathBuf,
    args: Vec<OsString>,
    /// `(name, Some(value))` sets, `(name, None)` removes, in the order given.
    envs: Vec<(OsString, Option<OsString>)>,
    env_cleared: bool,
    stdin: Option<Vec<u8>>,
    cwd: Option<PathBuf>,
}

impl OmxCommand {
    /// `program` with the ambient AWS, Docker, `OMX_*`, `RUST_LOG` and `XDG_CACHE_HOME`
    /// variables removed.
    pub fn new(program: impl AsRef<Path>) -> OmxCommand {
        let envs = std::env::vars_os()
            .filter_map(|(name, _)| {
                let text = name.to_str()?;
                let ambient = AMBIENT_NAMES.contains(&text)
                    || (AMBIENT_PREFIXES.iter().any(|p| text.starts_with(p))
                        && !text.starts_with(KEPT_PREFIX));
                ambient.then_some((name, None))
            })
            .collect();
        OmxCommand {
            program: program.as_ref().to_path_buf(),
            args: Vec::new(),
            envs,
            env_cleared: false,
            stdin: None,
            cwd: None,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> OmxCommand {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> OmxCommand
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    pub fn env(mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> OmxCommand {
        self.envs.push((
            name.as_ref().to_os_string(),
            Some(value.as_ref().to_os_string()),
        ));
        self
    }

    pub fn env_remove(mut self, name: impl AsRef<OsStr>) -> OmxCommand {
        self.envs.push((name.as_ref().to_os_string(), None));
        self
    }

    /// Starts from an empty environment (a fresh machine): only what is set afterwards is seen.
    pub fn env_clear(mut self) -> OmxCommand {
        self.env_cleared = true;
        self.envs.clear();
        self
    }

    /// Bytes written to the binary's stdin (which is otherwise empty, never the test's own).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> OmxCommand {
        self.stdin = Some(bytes.into());
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> OmxCommand {
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }

    /// This command run through `wrapper` (e.g. `sh -c 'ulimit -v …; exec "$@"' sh`): the
    /// wrapper's words first, then this program and its arguments; the environment is kept.
    pub fn wrapped(mut self, wrapper: &[&str]) -> OmxCommand {
        let (program, leading) = wrapper.split_first().expect("a wrapper program");
        let mut args: Vec<OsString> = leading.iter().map(OsString::from).collect();
        args.push(self.program.into_os_string());
        args.append(&mut self.args);
        self.program = PathBuf::from(program);
        self.args = args;
        self
    }

    /// The [`std::process::Command`] this describes, for tests that spawn and signal the child
    /// themselves. Stdin is null unless [`OmxCommand::stdin`] was given (then it is piped and
    /// the caller writes it).
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        if self.env_cleared {
            command.env_clear();
        }
        for (name, value) in &self.envs {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        if let Some(dir) = &self.cwd {
            command.current_dir(dir);
        }
        command.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        command
    }

    /// Runs the binary to completion and captures its output. A run given no `HOME` and no
    /// `XDG_CACHE_HOME` gets a cache home of its own, removed afterwards, so what it caches
    /// (blob locations) is seen by no other run.
    pub fn run(&self) -> OmxOutput {
        let mut command = self.command();
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let cache_home_given = self
            .envs
            .iter()
            .any(|(name, value)| value.is_some() && (name == "HOME" || name == "XDG_CACHE_HOME"));
        let own_cache_home = (!cache_home_given).then(|| {
            let dir = tempfile::tempdir().expect("a temporary cache home");
            command.env("XDG_CACHE_HOME", dir.path());
            dir
        });
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {self}: {e}"));
        if let Some(bytes) = &self.stdin {
            let mut stdin = child.stdin.take().expect("stdin is piped");
            // A binary that exits without reading its stdin closes the pipe: not an error here.
            let _ = stdin.write_all(bytes);
        }
        let output = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("cannot wait for {self}: {e}"));
        drop(own_cache_home);
        OmxOutput::of(self, output)
    }
}

/// The command line as a shell would take it, variables set first (removals are not shown).
impl fmt::Display for OmxCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(dir) = &self.cwd {
            write!(f, "(cd {} &&) ", dir.display())?;
        }
        if self.env_cleared {
            f.write_str("env -i ")?;
        }
        for (name, value) in &self.envs {
            if let Some(value) = value {
                write!(f, "{}={} ", name.to_string_lossy(), value.to_string_lossy())?;
            }
        }
        write!(f, "{}", self.program.display())?;
        for arg in &self.args {
            write!(f, " {:?}", arg.to_string_lossy())?;
        }
        Ok(())
    }
}

/// What a finished run left: derefs to [`std::process::Output`] (`status`, `stdout`, `stderr`
/// bytes) and adds text views and assertions that print the command and both streams.
pub struct OmxOutput {
    command: String,
    output: Output,
}

impl Deref for OmxOutput {
    type Target = Output;

    fn deref(&self) -> &Output {
        &self.output
    }
}

impl fmt::Debug for OmxOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "command: {}\nstatus: {}\nstdout:\n{}\nstderr:\n{}",
            self.command,
            self.output.status,
            self.stdout(),
            self.stderr()
        )
    }
}

impl OmxOutput {
    /// What a child the test spawned itself from `command` (with [`OmxCommand::command`]) left.
    pub fn of(command: &OmxCommand, output: Output) -> OmxOutput {
        OmxOutput {
            command: command.to_string(),
            output,
        }
    }

    /// The exit code, after checking the process ended by itself and did not panic.
    pub fn code(&self) -> i32 {
        let code = self
            .output
            .status
            .code()
            .unwrap_or_else(|| panic!("killed by a signal:\n{self:?}"));
        assert_ne!(code, 101, "the binary panicked:\n{self:?}");
        assert!(
            !self.stderr().contains("panicked at"),
            "the binary panicked:\n{self:?}"
        );
        code
    }

    /// stdout as (lossy) text.
    pub fn stdout(&self) -> String {
        text(&self.output.stdout)
    }

    /// stderr as (lossy) text.
    pub fn stderr(&self) -> String {
        text(&self.output.stderr)
    }

    /// stdout and stderr together, for searching.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout(), self.stderr())
    }

    /// stdout parsed as JSON (a report).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.output.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self:?}"))
    }

    /// Asserts the exit code.
    #[track_caller]
    pub fn assert_code(&self, expected: i32) -> &OmxOutput {
        assert_eq!(self.code(), expected, "unexpected exit code:\n{self:?}");
        self
    }

    /// The underlying output, for code that takes [`std::process::Output`].
    pub fn into_output(self) -> Output {
        self.output
    }
}

/// Output bytes as (lossy) text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_home(command: OmxCommand) -> String {
        command
            .args(["-c", "printf %s \"$XDG_CACHE_HOME\""])
            .run()
            .stdout()
    }

    #[test]
    fn a_run_without_a_home_of_its_own_gets_a_cache_home_of_its_own() {
        let first = cache_home(OmxCommand::new("sh"));
        let second = cache_home(OmxCommand::new("sh"));
        assert!(!first.is_empty() && first != second, "{first} {second}");
        assert!(
            !Path::new(&first).exists(),
            "removed after the run: {first}"
        );
        // A test that gives the run a HOME keeps the cache there, as a user's run would.
        assert_eq!(
            cache_home(OmxCommand::new("sh").env("HOME", "/nonexistent")),
            ""
        );
        let chosen = cache_home(OmxCommand::new("sh").env("XDG_CACHE_HOME", "/x"));
        assert_eq!(chosen, "/x");
    }
}
