//! ECR registry credentials (`GetAuthorizationToken`) and their cache.

use std::time::{Duration, SystemTime};

pub use omx_core::Secret;

/// Basic-auth credentials for an ECR registry (`docker login` equivalent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcrToken {
    /// Always `AWS`.
    pub username: String,
    pub password: Secret,
    /// When ECR stops accepting the password (12 hours after issue).
    pub expires_at: SystemTime,
    /// `https://<account>.dkr.ecr.<region>.amazonaws.com`.
    pub proxy_endpoint: String,
}

/// How long before expiry a cached token is replaced, so that a copy that starts with it does not
/// see it expire halfway through a large blob.
pub const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(15 * 60);

impl EcrToken {
    /// Decodes the `authorizationToken` of `GetAuthorizationToken`: base64 of `AWS:<password>`.
    pub(crate) fn decode(
        authorization_token: &str,
        expires_at: SystemTime,
        proxy_endpoint: String,
    ) -> Result<EcrToken, String> {
        let decoded = aws_smithy_types::base64::decode(authorization_token)
            .map_err(|_| "the authorization token is not base64".to_string())?;
        let decoded = String::from_utf8(decoded)
            .map_err(|_| "the authorization token is not UTF-8 text".to_string())?;
        let (username, password) = decoded
            .split_once(':')
            .ok_or_else(|| "the authorization token is not <user>:<password>".to_string())?;
        Ok(EcrToken {
            username: username.to_string(),
            password: Secret::new(password),
            expires_at,
            proxy_endpoint,
        })
    }

    /// Is the token still good for at least [`TOKEN_REFRESH_MARGIN`] at `now`?
    pub fn is_fresh_at(&self, now: SystemTime) -> bool {
        self.expires_at
            .duration_since(now)
            .is_ok_and(|left| left > TOKEN_REFRESH_MARGIN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(expires_at: SystemTime) -> EcrToken {
        EcrToken::decode("QVdTOnBhc3M6d29yZA==", expires_at, "https://r".to_string()).unwrap()
    }

    #[test]
    fn decodes_user_and_password_and_keeps_colons_in_the_password() {
        // base64("AWS:pass:word")
        let token = token(SystemTime::UNIX_EPOCH);
        assert_eq!(token.username, "AWS");
        assert_eq!(token.password.expose(), "pass:word");
    }

    #[test]
    fn rejects_tokens_that_are_not_base64_user_colon_password() {
        let expiry = SystemTime::UNIX_EPOCH;
        let error = EcrToken::decode("%%%", expiry, String::new()).unwrap_err();
        assert!(error.contains("not base64"), "{error}");
        // base64("nocolon")
        let error = EcrToken::decode("bm9jb2xvbg==", expiry, String::new()).unwrap_err();
        assert!(error.contains("<user>:<password>"), "{error}");
    }

    #[test]
    fn debug_output_redacts_the_password() {
        let printed = format!("{:?}", token(SystemTime::UNIX_EPOCH));
        assert!(printed.contains("***"), "{printed}");
        assert!(!printed.contains("pass:word"), "{printed}");
    }

    #[test]
    fn fresh_until_fifteen_minutes_before_expiry() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let hour = Duration::from_secs(3600);
        assert!(token(now + 12 * hour).is_fresh_at(now));
        assert!(token(now + TOKEN_REFRESH_MARGIN + Duration::from_secs(1)).is_fresh_at(now));
        assert!(!token(now + TOKEN_REFRESH_MARGIN).is_fresh_at(now));
        assert!(!token(now + Duration::from_secs(60)).is_fresh_at(now));
        assert!(!token(now - hour).is_fresh_at(now));
    }
}
