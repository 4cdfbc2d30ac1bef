//! Exit codes shared by every command, so scripts can tell "some images failed" from "nothing
//! could be done".

use std::ffi::OsStr;
use std::fmt::Display;
use std::process::ExitCode;

use clap::error::ErrorKind;
use omx_core::excerpt::printable;
use omx_core::secret::redact;

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
            // The chain is redacted and escaped, and says each cause once.
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

/// Every message we print about an error: credentials [`redact`]ed, control characters escaped
/// (an argument, a path or a server's message may carry any), our own line breaks kept.
pub fn shown(message: &str) -> String {
    printable(&redact(message)).into_owned()
}

/// The command line, parsed; on a usage error, clap's message made [`shown`] and the exit code
/// clap gives it (2). clap quotes rejected and unknown arguments as they were typed, escape
/// sequences included; help and version go out as clap writes them.
pub fn parse_arguments<P: clap::Parser>() -> P {
    P::try_parse().unwrap_or_else(|error| {
        if !error.use_stderr() {
            error.exit();
        }
        // Rendered again without clap's colours: its plain rendering strips every escape
        // sequence, the user's too, and `--platform 'linux/amd64<ESC>[2J'` would read as a valid
        // value; without colours the user's bytes are all that is left to escape.
        let plain = P::command()
            .styles(clap::builder::Styles::plain())
            .try_get_matches_from(std::env::args_os())
            .err()
            .unwrap_or(error);
        eprint!("{}", shown(&plain.render().ansi().to_string()));
        std::process::exit(plain.exit_code());
    })
}

/// A clap value parser for `parse` whose error is `parse`'s own message, [`shown`], instead of
/// clap's `invalid value '<the raw value>'`: for arguments that may carry a credential or an
/// escape sequence. `parse`'s error names the argument.
pub fn echoless<T, E, F>(parse: F) -> Echoless<F>
where
    F: Fn(&str) -> Result<T, E>,
{
    Echoless(parse)
}

#[derive(Clone)]
pub struct Echoless<F>(F);

impl<T, E, F> clap::builder::TypedValueParser for Echoless<F>
where
    T: Clone + Send + Sync + 'static,
    E: Display,
    F: Fn(&str) -> Result<T, E> + Clone + Send + Sync + 'static,
{
    type Value = T;

    fn parse_ref(
        &self,
        _command: &clap::Command,
        argument: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        let fail = |message: String| {
            clap::Error::raw(ErrorKind::ValueValidation, format!("{}\n", shown(&message)))
        };
        let text = value.to_str().ok_or_else(|| {
            let name = argument.and_then(clap::Arg::get_long).unwrap_or("argument");
            fail(format!(
                "invalid --{name} {}: not valid UTF-8",
                omx_core::excerpt::quoted(&value.to_string_lossy())
            ))
        })?;
        (self.0)(text).map_err(|e| fail(e.to_string()))
    }
}
