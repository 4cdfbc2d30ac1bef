//! The one error type of the AWS adapters.

use std::error::Error as StdError;
use std::fmt;

use aws_sdk_ecr::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use omx_core::policy::PolicyError;

/// An AWS call that failed, naming the operation, what it was about (a repository, the registry,
/// a pull-through-cache rule...) and AWS's own error code and message. Never carries credentials:
/// request signatures and raw responses are not kept.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error(
        "no AWS region is configured: pass a region, set AWS_REGION, or give the profile a region"
    )]
    NoRegion,
    /// AWS answered with an error (AccessDenied, throttling, a validation error...).
    #[error("{operation} for {target} failed: {code}: {message}")]
    Service {
        operation: &'static str,
        target: String,
        code: String,
        message: String,
    },
    /// The request did not get an answer: no credentials, no connection, a timeout...
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
            AwsError::Service { code, .. } => Some(code),
            _ => None,
        }
    }

    pub(crate) fn from_sdk<E, R>(
        operation: &'static str,
        target: impl Into<String>,
        error: SdkError<E, R>,
    ) -> AwsError
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
        R: fmt::Debug + Send + Sync + 'static,
    {
        let target = target.into();
        match &error {
            SdkError::ServiceError(service) => {
                let metadata = service.err();
                AwsError::Service {
                    operation,
                    target,
                    code: metadata.code().unwrap_or("UnknownError").to_string(),
                    message: metadata
                        .message()
                        .map(str::to_string)
                        .unwrap_or_else(|| DisplayErrorContext(&error).to_string()),
                }
            }
            _ => AwsError::Request {
                operation,
                target,
                reason: DisplayErrorContext(&error).to_string(),
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
