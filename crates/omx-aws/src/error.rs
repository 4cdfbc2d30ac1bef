//! The one error type of the AWS adapters, and the one place SDK errors are translated into
//! messages a person can act on.
//!
//! Every message is one line that says what went wrong and what to do. SDK types are never
//! formatted with `Debug` (the SDK's `DisplayErrorContext` appends such a dump, so it is not used
//! either); the error's whole source chain is logged at debug level (`-v`) when it is translated.

use std::error::Error as StdError;
use std::fmt;

use aws_config::meta::ProviderChainError;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_ecr::error::{ProvideErrorMetadata, SdkError};
use omx_core::policy::PolicyError;

use crate::endpoint::Endpoint;

/// How to get working credentials, the same advice wherever credentials are the problem.
const CREDENTIALS_FIX: &str =
    "run `aws configure`, set AWS_PROFILE to a configured profile, or run `aws sso login`";

/// An AWS call that failed, naming the operation, what it was about (a repository, the registry,
/// a pull-through-cache rule...) and what to do. Never carries credentials: request signatures
/// and raw responses are not kept.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error(
        "no AWS region is configured: pass --region, set AWS_REGION, or give the profile a \
         region (`aws configure set region us-east-1`)"
    )]
    NoRegion,
    /// No credential source of the chain had credentials.
    #[error("no AWS credentials found (tried {tried}): {CREDENTIALS_FIX}")]
    NoCredentials { tried: String },
    /// An SSO session or session token is past its expiry.
    #[error("the AWS {what} has expired: {fix}")]
    CredentialsExpired {
        what: &'static str,
        fix: &'static str,
    },
    /// AWS does not know or accept the credentials sent.
    #[error("AWS rejected the credentials ({code}) during {operation}: {CREDENTIALS_FIX}")]
    CredentialsRejected {
        operation: &'static str,
        code: String,
    },
    /// A credential source is configured but failed (a broken profile, a provider timing out...).
    #[error("could not load AWS credentials: {reason}: check the profile, or {CREDENTIALS_FIX}")]
    CredentialsUnavailable { reason: String },
    /// IAM refused the call. `refusal` names who may not do what on which resource, and the
    /// fix.
    #[error("{operation} for {target} was denied: {refusal}")]
    AccessDenied {
        operation: &'static str,
        target: String,
        code: String,
        refusal: String,
    },
    /// AWS kept throttling the call through the SDK's retries.
    #[error(
        "{operation} for {target} was throttled by AWS ({code}) through every retry: run again \
         in a minute, or with fewer images at a time"
    )]
    Throttled {
        operation: &'static str,
        target: String,
        code: String,
    },
    /// A service quota (repositories per registry, rules per registry...) is used up.
    #[error(
        "{operation} for {target} hit an AWS service quota: {message}; delete what is no longer \
         needed or ask for an increase in the Service Quotas console"
    )]
    QuotaExceeded {
        operation: &'static str,
        target: String,
        message: String,
    },
    /// The request never got an answer from the endpoint.
    #[error(
        "{operation} for {target} failed: cannot reach {endpoint} ({reason}): check the network \
         and any HTTPS_PROXY, or the AWS_ENDPOINT_URL settings"
    )]
    Unreachable {
        operation: &'static str,
        target: String,
        endpoint: String,
        reason: String,
    },
    /// AWS answered with another error (a validation error, a missing resource...).
    #[error("{operation} for {target} failed: {code}: {message}")]
    Service {
        operation: &'static str,
        target: String,
        code: String,
        message: String,
    },
    /// The request failed in another way (a response that could not be read...).
    #[error("{operation} for {target} failed: {reason}")]
    Request {
        operation: &'static str,
        target: String,
        reason: String,
    },
    /// AWS answered, but without something it always sends.
    #[error("{operation} for {target}: unexpected answer: {reason}")]
    UnexpectedResponse {
        operation: &'static str,
        target: String,
        reason: String,
    },
    /// The existing policy of `target` could not be merged with ours.
    #[error("policy of {target}: {source}")]
    Policy {
        target: String,
        #[source]
        source: PolicyError,
    },
}

impl AwsError {
    /// AWS's error code (`AccessDeniedException`, `ThrottlingException`...), when AWS answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            AwsError::Service { code, .. }
            | AwsError::Throttled { code, .. }
            | AwsError::AccessDenied { code, .. }
            | AwsError::CredentialsRejected { code, .. } => Some(code),
            _ => None,
        }
    }

    /// An SDK call's answer for a lookup: the service error that `absent` recognises (no such
    /// repository, policy, rule...) is `None`; any other failure is translated, never taken for
    /// "absent".
    pub(crate) fn absent_as_none<T, E, R>(
        endpoint: &Endpoint,
        operation: &'static str,
        target: impl Into<String>,
        result: Result<T, SdkError<E, R>>,
        absent: impl Fn(&E) -> bool,
    ) -> Result<Option<T>, AwsError>
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
        R: fmt::Debug + Send + Sync + 'static,
    {
        match result {
            Ok(answer) => Ok(Some(answer)),
            Err(error) if error.as_service_error().is_some_and(&absent) => Ok(None),
            Err(error) => Err(AwsError::from_sdk(endpoint, operation, target, error)),
        }
    }

    /// Translates an SDK error of `operation` (about `target`, sent to `endpoint`).
    pub(crate) fn from_sdk<E, R>(
        endpoint: &Endpoint,
        operation: &'static str,
        target: impl Into<String>,
        error: SdkError<E, R>,
    ) -> AwsError
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
        R: fmt::Debug + Send + Sync + 'static,
    {
        let target = target.into();
        tracing::debug!(
            operation,
            target = %target,
            endpoint = %endpoint.url,
            chain = %Chain(&error),
            "AWS call failed"
        );
        if let SdkError::ServiceError(service) = &error {
            let metadata = service.err();
            let code = metadata.code().unwrap_or("UnknownError").to_string();
            let message = metadata
                .message()
                .map(str::to_string)
                .unwrap_or_else(|| Chain(&error).to_string());
            return from_code(endpoint, operation, target, code, message);
        }
        if let Some(credentials) = find_source::<CredentialsError>(&error) {
            return from_credentials(credentials);
        }
        let unreachable = match &error {
            SdkError::TimeoutError(_) => Some("no answer in time".to_string()),
            SdkError::DispatchFailure(failure) if failure.is_timeout() => {
                Some("no answer in time".to_string())
            }
            SdkError::DispatchFailure(failure) if failure.is_io() => Some(innermost(&error)),
            _ => None,
        };
        match unreachable {
            Some(reason) => AwsError::Unreachable {
                operation,
                target,
                endpoint: endpoint.url.to_string(),
                reason,
            },
            None => AwsError::Request {
                operation,
                target,
                reason: Chain(&error).to_string(),
            },
        }
    }

    pub(crate) fn unexpected(
        operation: &'static str,
        target: impl Into<String>,
        reason: impl Into<String>,
    ) -> AwsError {
        AwsError::UnexpectedResponse {
            operation,
            target: target.into(),
            reason: reason.into(),
        }
    }
}

/// An error AWS answered with, by its code.
fn from_code(
    endpoint: &Endpoint,
    operation: &'static str,
    target: String,
    code: String,
    message: String,
) -> AwsError {
    match code.as_str() {
        "AccessDeniedException"
        | "AccessDenied"
        | "UnauthorizedOperation"
        | "UnauthorizedException" => access_denied(endpoint, operation, target, code, &message),
        "ThrottlingException"
        | "Throttling"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "SlowDown" => AwsError::Throttled {
            operation,
            target,
            code,
        },
        "LimitExceededException" | "ServiceQuotaExceededException" | "AccountLimitExceeded" => {
            AwsError::QuotaExceeded {
                operation,
                target,
                message,
            }
        }
        "ExpiredTokenException" | "ExpiredToken" | "RequestExpired" => {
            AwsError::CredentialsExpired {
                what: "session token",
                fix: "get fresh credentials (`aws sso login` for an SSO profile, or new session \
                      credentials from your identity provider) and run again",
            }
        }
        "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "InvalidAccessKeyId" => AwsError::CredentialsRejected { operation, code },
        _ => AwsError::Service {
            operation,
            target,
            code,
            message,
        },
    }
}

/// AccessDenied, with the principal, action and resource AWS names in its message
/// (`User: ARN is not authorized to perform: ACTION on resource: ARN because ...`) and the
/// statement that would allow it.
fn access_denied(
    endpoint: &Endpoint,
    operation: &'static str,
    target: String,
    code: String,
    message: &str,
) -> AwsError {
    let word_after = |marker: &str| {
        message.find(marker).map(|at| {
            message[at + marker.len()..]
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .trim_end_matches([',', '.'])
                .to_string()
        })
    };
    let principal = word_after("User: ").unwrap_or_else(|| "the caller".to_string());
    let action = word_after("perform: ")
        .unwrap_or_else(|| format!("{}:{operation}", endpoint.service.iam_prefix));
    let resource = word_after("on resource: ").unwrap_or_else(|| "*".to_string());
    let fix = if message.contains("explicit deny") {
        let rest = message
            .split_once("explicit deny")
            .map(|(_, rest)| rest.trim().trim_end_matches('.'))
            .unwrap_or_default();
        format!("an explicit deny {rest} refuses it, so an Allow will not help: ask the account's administrator")
    } else {
        format!(
            "allow it with the IAM policy statement \
             {{\"Effect\": \"Allow\", \"Action\": \"{action}\", \"Resource\": \"{resource}\"}}"
        )
    };
    AwsError::AccessDenied {
        operation,
        target,
        code,
        refusal: format!("{principal} may not perform {action} on {resource}; {fix}"),
    }
}

/// A credential provider's failure.
fn from_credentials(error: &CredentialsError) -> AwsError {
    let chain = Chain(error).to_string();
    let lowered = chain.to_lowercase();
    if lowered.contains("sso") && (lowered.contains("expired") || lowered.contains("refresh")) {
        return AwsError::CredentialsExpired {
            what: "SSO session",
            fix: "run `aws sso login` (with --profile NAME for a named profile) and run again",
        };
    }
    match error {
        CredentialsError::CredentialsNotLoaded(_) => AwsError::NoCredentials {
            tried: tried_sources(error),
        },
        CredentialsError::ProviderTimedOut(timed_out) => AwsError::CredentialsUnavailable {
            reason: format!(
                "the credential provider gave no answer within {:?}",
                timed_out.timeout_duration()
            ),
        },
        _ => AwsError::CredentialsUnavailable {
            reason: innermost(error),
        },
    }
}

/// The credential sources the default chain tried, in words.
fn tried_sources(error: &CredentialsError) -> String {
    let names: Vec<&str> = match find_source::<ProviderChainError<CredentialsError>>(error) {
        Some(chain) => chain
            .attempts()
            .iter()
            .map(|attempt| source_name(attempt.name()))
            .collect(),
        None => vec!["the configured credential provider"],
    };
    names.join(", ")
}

fn source_name(provider: &str) -> &str {
    match provider {
        "Environment" => "environment variables",
        "Profile" => "the shared config and credentials files",
        "WebIdentityToken" => "a web identity token",
        "EcsContainer" => "ECS container credentials",
        "Ec2InstanceMetadata" => "EC2 instance metadata",
        other => other,
    }
}

/// The first error of type `T` in `error`'s source chain, `error` included.
fn find_source<'a, T: StdError + 'static>(error: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(found) = error.downcast_ref::<T>() {
            return Some(found);
        }
        current = error.source();
    }
    None
}

/// The last message of the chain: the root cause (`Connection refused (os error 111)`).
fn innermost(error: &(dyn StdError + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

/// An error and its sources, each by its `Display`, joined by `: `; repeated messages (wrappers
/// that print their source) appear once.
struct Chain<'a>(&'a (dyn StdError + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut written: Vec<String> = Vec::new();
        let mut current = Some(self.0);
        while let Some(error) = current {
            let message = error.to_string();
            if !written.iter().any(|earlier| earlier.contains(&message)) {
                written.push(message);
            }
            current = error.source();
        }
        f.write_str(&written.join(": "))
    }
}
