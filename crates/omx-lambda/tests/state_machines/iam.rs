//! The IAM permissions a program's recorded requests need, checked against the statements of the
//! role CloudFormation would give it: a missing permission fails the test, not a deployment.
//!
//! AWS API calls are recorded by [`AwsCallRecorder`] (action from the request itself). Registry
//! API calls to ECR are recorded by a [`FaultProxy`] and mapped to the ECR actions that authorize
//! them (Amazon ECR User Guide, "Private registry authentication" and "Required IAM permissions
//! for pushing an image": pulls need `ecr:BatchGetImage` and `ecr:GetDownloadUrlForLayer`, pushes
//! `ecr:InitiateLayerUpload`, `ecr:UploadLayerPart`, `ecr:CompleteLayerUpload`,
//! `ecr:BatchCheckLayerAvailability` and `ecr:PutImage`).
//!
//! A statement grants a request when it is an `Allow` whose actions and resources match (IAM
//! wildcards `*` and `?`; actions case-insensitively) and whose `Condition`, if any, holds. Only
//! `StringEquals` and `StringLike` on keys the request supplies are evaluated (here: `s3:prefix`,
//! the `prefix` parameter of an S3 ListObjects request, IAM's condition key for ListBucket); a
//! statement with any other condition (a resource tag, say) never counts as a grant.

use omx_testenv::aws_recorder::AwsCall;
use serde_json::Value;

const PARTITION_REGION_ACCOUNT: &str = "aws:ecr:us-east-1:123456789012";

/// One permission a request needed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Needed {
    pub action: String,
    pub resource: String,
    /// Condition keys the request supplies, with their values.
    pub context: Vec<(String, String)>,
}

/// `sts:GetCallerIdentity` needs no permission ("No permissions are required to perform this
/// operation", AWS STS API reference).
const NEEDS_NO_PERMISSION: [&str; 1] = ["sts:GetCallerIdentity"];

/// What the recorded AWS API calls needed.
pub fn needed_by_calls(calls: &[AwsCall]) -> Vec<Needed> {
    calls
        .iter()
        .filter_map(|call| Some((call.action.clone()?, call)))
        .filter(|(action, _)| !NEEDS_NO_PERMISSION.contains(&action.as_str()))
        .flat_map(|(action, call)| {
            resources_of(&action, call)
                .into_iter()
                .map(move |resource| Needed {
                    action: action.clone(),
                    resource,
                    context: condition_context(&action, call),
                })
        })
        .collect()
}

/// The resources a call acts on, as IAM names them.
fn resources_of(action: &str, call: &AwsCall) -> Vec<String> {
    if let Some(operation) = action.strip_prefix("s3:") {
        let path = call.target.split('?').next().unwrap_or_default();
        let path = path.trim_start_matches('/');
        return vec![match operation {
            "ListBucket" => format!("arn:aws:s3:::{}", path.trim_end_matches('/')),
            _ => format!("arn:aws:s3:::{path}"),
        }];
    }
    if action.starts_with("ecr:") {
        // ECR's JSON requests name repositories by `repositoryName`, `repositoryNames` or
        // `resourceArn` (tagging).
        let body: Value = serde_json::from_str(&call.body).unwrap_or(Value::Null);
        let mut resources: Vec<String> = body["repositoryName"]
            .as_str()
            .into_iter()
            .chain(
                body["repositoryNames"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str),
            )
            .map(repository_arn)
            .collect();
        resources.extend(body["resourceArn"].as_str().map(str::to_string));
        if !resources.is_empty() {
            return resources;
        }
    }
    // Actions without a resource type (ecr:GetAuthorizationToken) are granted on "*".
    vec!["*".to_string()]
}

/// `s3:prefix` of a ListObjects request: its `prefix` parameter (empty when absent, as IAM
/// evaluates a listing without one).
fn condition_context(action: &str, call: &AwsCall) -> Vec<(String, String)> {
    if action != "s3:ListBucket" {
        return Vec::new();
    }
    let query = call
        .target
        .split_once('?')
        .map(|(_, query)| query)
        .unwrap_or_default();
    let prefix = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("prefix="))
        .map(percent_decoded)
        .unwrap_or_default();
    vec![("s3:prefix".to_string(), prefix)]
}

fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| text.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                index += 3;
            }
            None => {
                decoded.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// Whether `condition` (a statement's `Condition` block) holds for `need`'s request.
fn condition_holds(condition: Option<&Value>, need: &Needed) -> bool {
    let Some(condition) = condition.and_then(Value::as_object) else {
        return true;
    };
    condition.iter().all(|(operator, keys)| {
        let like = match operator.as_str() {
            "StringLike" => true,
            "StringEquals" => false,
            _ => return false,
        };
        keys.as_object().is_some_and(|keys| {
            keys.iter().all(|(key, wanted)| {
                let Some((_, actual)) = need.context.iter().find(|(name, _)| name == key) else {
                    return false;
                };
                let wanted: Vec<&str> = match wanted {
                    Value::String(one) => vec![one.as_str()],
                    Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
                    _ => Vec::new(),
                };
                wanted.iter().any(|pattern| {
                    if like {
                        wildcard_match(pattern, actual)
                    } else {
                        pattern == actual
                    }
                })
            })
        })
    })
}

fn repository_arn(repository: &str) -> String {
    format!("arn:{PARTITION_REGION_ACCOUNT}:repository/{repository}")
}

/// What the recorded registry API requests (`(method, path and query, status)`) needed.
pub fn needed_by_registry_requests(requests: &[(String, String, u16)]) -> Vec<Needed> {
    requests
        .iter()
        .filter_map(|(method, target, _)| {
            let path = target.split('?').next()?.strip_prefix("/v2/")?;
            let (repository, kind) = ["/manifests/", "/blobs/uploads", "/blobs/", "/tags/"]
                .iter()
                .find_map(|marker| path.split_once(marker).map(|(name, _)| (name, *marker)))?;
            let action = match (kind, method.as_str()) {
                ("/manifests/", "GET" | "HEAD") => "ecr:BatchGetImage",
                ("/manifests/", "PUT") => "ecr:PutImage",
                ("/blobs/", "GET") => "ecr:GetDownloadUrlForLayer",
                ("/blobs/", "HEAD") => "ecr:BatchCheckLayerAvailability",
                ("/blobs/uploads", "POST") => "ecr:InitiateLayerUpload",
                ("/blobs/uploads", "PATCH") => "ecr:UploadLayerPart",
                ("/blobs/uploads", "PUT") => "ecr:CompleteLayerUpload",
                ("/tags/", "GET") => "ecr:ListImages",
                _ => return None,
            };
            Some(Needed {
                action: action.to_string(),
                resource: repository_arn(repository),
                context: Vec::new(),
            })
        })
        .collect()
}

/// The needed permissions that no `Allow` of `statements` grants.
pub fn not_granted(needed: &[Needed], statements: &Value) -> Vec<Needed> {
    let statements = statements.as_array().cloned().unwrap_or_default();
    let strings = |value: &Value| -> Vec<String> {
        value
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut missing: Vec<Needed> = needed
        .iter()
        .filter(|need| {
            !statements.iter().any(|statement| {
                statement["Effect"] == "Allow"
                    && condition_holds(statement.get("Condition"), need)
                    && strings(&statement["Action"]).iter().any(|pattern| {
                        wildcard_match(&pattern.to_lowercase(), &need.action.to_lowercase())
                    })
                    && strings(&statement["Resource"])
                        .iter()
                        .any(|pattern| wildcard_match(pattern, &need.resource))
            })
        })
        .cloned()
        .collect();
    missing.sort();
    missing.dedup();
    missing
}

/// IAM's wildcard matching: `*` is any run of characters, `?` any one character.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (pattern, text): (Vec<char>, Vec<char>) =
        (pattern.chars().collect(), text.chars().collect());
    // The classic two-pointer match with backtracking to the last `*`.
    let (mut p, mut t, mut star, mut mark) = (0, 0, None, 0);
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some(p);
            mark = t;
            p += 1;
        } else if let Some(star) = star {
            p = star + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wildcards_match_as_iam_matches_them() {
        assert!(wildcard_match(
            "arn:aws:ecr:*:1:repository/dockerhub/*",
            "arn:aws:ecr:us-east-1:1:repository/dockerhub/a/b"
        ));
        assert!(!wildcard_match(
            "arn:aws:ecr:*:1:repository/dockerhub/*",
            "arn:aws:ecr:us-east-1:1:repository/quay/a"
        ));
        assert!(wildcard_match("s3:get*", "s3:getobject"));
        assert!(wildcard_match("*", "anything"));
        assert!(!wildcard_match("ecr:PutImage", "ecr:PutImages"));
    }

    #[test]
    fn conditional_grants_do_not_count() {
        let need = Needed {
            action: "ecr:SetRepositoryPolicy".into(),
            resource: repository_arn("x"),
            context: Vec::new(),
        };
        let conditional = json!([{"Effect": "Allow", "Action": ["ecr:SetRepositoryPolicy"],
            "Resource": ["arn:aws:ecr:us-east-1:123456789012:repository/*"],
            "Condition": {"StringEquals": {"aws:ResourceTag/createdBy": "omx-ecr-helper"}}}]);
        assert_eq!(
            not_granted(std::slice::from_ref(&need), &conditional),
            [need]
        );
    }

    #[test]
    fn listing_grants_hold_for_the_prefixes_their_condition_names() {
        let statements = json!([{"Effect": "Allow", "Action": ["s3:ListBucket"],
            "Resource": ["arn:aws:s3:::team-bucket"],
            "Condition": {"StringLike": {"s3:prefix": ["src", "src/*"]}}}]);
        let listing = |prefix: &str| AwsCall {
            action: Some("s3:ListBucket".into()),
            method: "GET".into(),
            target: format!("/team-bucket?list-type=2&prefix={prefix}"),
            body: String::new(),
        };
        let inside = needed_by_calls(&[listing("src%2Fa%2F")]);
        assert!(not_granted(&inside, &statements).is_empty());
        let outside = needed_by_calls(&[listing("other%2F")]);
        assert_eq!(not_granted(&outside, &statements), outside);
    }
}
