//! Exit codes shared by every command, so scripts can tell "some images failed" from "nothing
//! could be done".

use std::process::ExitCode;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything succeeded or was skipped.
    Success,
    /// Some entries failed or were invalid; the others were done (exit 1).
    PartialFailure,
}

/// An error that made the whole input unusable (exit 2), as opposed to a failure while working (1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UnusableInput(pub String);

/// Prints an error chain (each cause once: wrappers that quote their cause do not repeat it) and
/// maps the outcome to the process exit code.
pub fn report(result: anyhow::Result<Outcome>) -> ExitCode {
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::PartialFailure) => ExitCode::from(1),
        Err(error) => {
            let chain: &(dyn std::error::Error + 'static) = error.as_ref();
            eprintln!("error: {}", omx_core::report::error_chain(chain));
            if error.downcast_ref::<UnusableInput>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}
