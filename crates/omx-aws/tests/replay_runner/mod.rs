//! The runner of `recorded.rs`'s table: the calls a case makes on the adapter, what each must
//! return, and [`run`], which replays a recording through them and then checks, with the SDK's
//! `assert_requests_match`, that every request sent was the recorded one and every recording
//! was used.

use omx_aws::testing::recorded::{ecr, ReplayEvent};
use omx_aws::{AwsError, Ecr, PolicyChange, RuleState, TemplateState};

/// One call of the adapter, as a case makes it.
pub enum Call {
    Rule {
        prefix: &'static str,
        upstream: &'static str,
        credential_arn: Option<&'static str>,
    },
    Template {
        prefix: &'static str,
        description: &'static str,
    },
    RegistryPolicy {
        registry_id: &'static str,
        prefix: &'static str,
    },
    RepositoryPolicy(&'static str),
    ImageDigest {
        repository: &'static str,
        tag: &'static str,
    },
    AuthorizationToken,
}

/// What a call returned, whatever its type. (No case expects a digest: `Digest` is only shown
/// when a case's call returned one instead of its error.)
#[derive(Debug)]
#[allow(dead_code)]
enum Returned {
    Rule(RuleState),
    Template(TemplateState),
    Policy(PolicyChange),
    Digest(Option<String>),
    Password(String),
}

impl Call {
    async fn make(&self, ecr: &Ecr) -> Result<Returned, AwsError> {
        Ok(match *self {
            Call::Rule {
                prefix,
                upstream,
                credential_arn,
            } => Returned::Rule(
                ecr.ensure_pull_through_cache_rule(prefix, upstream, credential_arn)
                    .await?,
            ),
            Call::Template {
                prefix,
                description,
            } => Returned::Template(ecr.ensure_creation_template(prefix, description).await?),
            Call::RegistryPolicy {
                registry_id,
                prefix,
            } => Returned::Policy(
                ecr.ensure_omics_registry_policy(registry_id, prefix)
                    .await?,
            ),
            Call::RepositoryPolicy(repository) => {
                Returned::Policy(ecr.ensure_omics_policy(repository).await?)
            }
            Call::ImageDigest { repository, tag } => Returned::Digest(
                ecr.image_digest(repository, tag)
                    .await?
                    .map(|digest| digest.to_string()),
            ),
            Call::AuthorizationToken => Returned::Password(
                ecr.authorization_token()
                    .await?
                    .password
                    .expose()
                    .to_string(),
            ),
        })
    }
}

/// What a call must return.
pub enum Expect {
    Rule(RuleState),
    Template(TemplateState),
    /// The policy was written (its text is the recording's concern).
    PolicyUpdated,
    Policy(PolicyChange),
    Password(&'static str),
    /// The call fails with ECR's error `code` (when given) and a message that `message`
    /// describes, showing none of `never_shown`.
    Failure {
        code: Option<&'static str>,
        message: Message,
        never_shown: &'static [&'static str],
    },
}

/// How a failure's message must read.
pub enum Message {
    Is(&'static str),
    StartsWith(&'static str),
    Contains(&'static str),
}

impl Expect {
    fn check(&self, returned: Result<Returned, AwsError>) {
        match (self, returned) {
            (Expect::Rule(expected), Ok(Returned::Rule(state))) => assert_eq!(&state, expected),
            (Expect::Template(expected), Ok(Returned::Template(state))) => {
                assert_eq!(&state, expected)
            }
            (Expect::PolicyUpdated, Ok(Returned::Policy(change))) => {
                assert!(matches!(change, PolicyChange::Updated(_)), "{change:?}")
            }
            (Expect::Policy(expected), Ok(Returned::Policy(change))) => {
                assert_eq!(&change, expected)
            }
            (Expect::Password(expected), Ok(Returned::Password(password))) => {
                assert_eq!(&password, expected)
            }
            (
                Expect::Failure {
                    code,
                    message,
                    never_shown,
                },
                Err(error),
            ) => {
                if code.is_some() {
                    assert_eq!(error.code(), *code);
                }
                let shown = error.to_string();
                match message {
                    Message::Is(expected) => assert_eq!(shown, *expected),
                    Message::StartsWith(start) => assert!(shown.starts_with(start), "{shown}"),
                    Message::Contains(part) => assert!(shown.contains(part), "{shown}"),
                }
                for secret in *never_shown {
                    assert!(!shown.contains(secret), "{shown}");
                }
            }
            (_, returned) => panic!("the call returned {returned:?}, not what the case expects"),
        }
    }
}

/// The runner: replays `recording`, makes each call in order and checks what it returned,
/// then that every request sent was the recorded one and every recording was used.
pub async fn run(recording: Vec<ReplayEvent>, steps: Vec<(Call, Expect)>) {
    let (ecr, replay) = ecr(recording);
    for (call, expect) in &steps {
        expect.check(call.make(&ecr).await);
    }
    replay.assert_requests_match(&[]);
}
