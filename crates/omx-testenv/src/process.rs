//! A server child process with its output captured to a log file, killed and reaped on drop.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Why a server did not become ready.
pub(crate) enum NotReady {
    /// The process exited first (e.g. its port was taken).
    Exited(std::process::ExitStatus),
    /// It kept running but never answered within the timeout.
    TimedOut,
}

pub(crate) struct ServerProcess {
    child: Child,
    log_path: PathBuf,
}

impl ServerProcess {
    /// Spawns `command` with stdout and stderr appended to `log_path`.
    pub(crate) fn spawn(mut command: Command, log_path: &Path) -> std::io::Result<ServerProcess> {
        let log = File::options().create(true).append(true).open(log_path)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        Ok(ServerProcess {
            child,
            log_path: log_path.to_path_buf(),
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The process output so far.
    pub(crate) fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_else(|error| format!("(cannot read {}: {error})", self.log_path.display()))
    }

    /// Polls `is_ready` every 50 ms until it returns true, the process exits, or `timeout` passes.
    pub(crate) fn wait_ready(
        &mut self,
        timeout: Duration,
        mut is_ready: impl FnMut() -> bool,
    ) -> Result<(), NotReady> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(NotReady::Exited(status));
            }
            if is_ready() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(NotReady::TimedOut);
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // kill fails only when the process already exited; wait reaps it either way.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
