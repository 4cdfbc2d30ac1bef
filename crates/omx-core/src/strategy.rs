//! How each image of a plan reaches HealthOmics: fetched by HealthOmics itself (`native`),
//! primed through ECR's pull-through cache now (`prime`), or copied by this tool (`copy`).
//!
//! Since October 2026 HealthOmics copies images of a few registries that the pull-through cache
//! does not serve into private ECR on a task's first use, given a registry mapping with a
//! `credentialArn` ([`crate::namespace::HEALTHOMICS_COPIED_UPSTREAMS`]). For those, a workflow
//! needs no copy made beforehand: only the mapping and the secret.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::namespace::{healthomics_copies_from, Method};
use crate::pull_plan::PullPlan;

/// What happens to one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// HealthOmics fetches it on first use through a registry mapping; nothing is copied now.
    Native,
    /// ECR's pull-through cache imports it now (a pull through the cache prefix).
    Prime,
    /// This tool copies it registry to registry; the workflow reaches it by an image mapping.
    Copy,
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strategy::Native => "native",
            Strategy::Prime => "prime",
            Strategy::Copy => "copy",
        })
    }
}

impl Strategy {
    /// What the plan does for an image brought over by `method` (the strategy before any choice).
    pub fn of_method(method: Method) -> Strategy {
        match method {
            Method::PullThroughCache => Strategy::Prime,
            Method::Copy => Strategy::Copy,
        }
    }
}

/// The `--strategy` a user picks for a whole manifest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StrategyChoice {
    /// Native for a registry HealthOmics copies from when its credential is known; pull-through
    /// cache images primed; everything else copied.
    #[default]
    Auto,
    /// What the tool always did: pull-through cache images primed, every other image copied.
    Copy,
    /// Native wherever HealthOmics can fetch the image itself (pull-through cache images are not
    /// primed either); other images are copied, with a warning saying why.
    Native,
}

/// A Secrets Manager secret ARN, checked against HealthOmics' `SecretArn` shape (botocore
/// `omics/2022-11-28/service-2.json`: length 20 to 2048, pattern
/// `arn:aws(-\w+)*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[a-zA-Z0-9\/_+=.@-]+`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SecretArn(String);

impl SecretArn {
    pub fn parse(text: &str) -> Result<SecretArn, String> {
        let shape = "arn:aws[-PARTITION]:secretsmanager:REGION:ACCOUNT(12 digits):secret:NAME";
        let fail = |why: &str| {
            Err(format!(
                "not a Secrets Manager secret ARN ({why}); expected {shape}"
            ))
        };
        if !(20..=2048).contains(&text.chars().count()) {
            return fail("it must be 20 to 2048 characters long");
        }
        let fields: Vec<&str> = text.splitn(7, ':').collect();
        let [arn, partition, service, region, account, kind, name] = fields[..] else {
            return fail("too few ':'-separated fields");
        };
        let word =
            |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        let partition_ok = partition.strip_prefix("aws").is_some_and(|rest| {
            rest.is_empty() || rest.split('-').skip(1).all(word) && rest.starts_with('-')
        });
        let region_ok = !region.is_empty()
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/_+=.@-".contains(&b));
        match () {
            _ if arn != "arn" || !partition_ok => fail("it must start with arn:aws"),
            _ if service != "secretsmanager" || kind != "secret" => {
                fail("it must name a secretsmanager secret")
            }
            _ if !region_ok => fail("the region must be lower-case letters, digits and '-'"),
            _ if !account_ok => fail("the account must be 12 digits"),
            _ if !name_ok => fail("the secret name may hold letters, digits and /_+=.@-"),
            _ => Ok(SecretArn(text.to_string())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SecretArn {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        SecretArn::parse(&text)
    }
}

impl From<SecretArn> for String {
    fn from(arn: SecretArn) -> String {
        arn.0
    }
}

impl fmt::Display for SecretArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What lets HealthOmics fetch upstream images itself: the secret for each registry it copies
/// from (`--credential HOST=ARN`, or what `setup` created), and the ECR prefix of each
/// pull-through cache rule the region really has (by upstream registry URL), when asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NativeAccess {
    credentials: BTreeMap<String, SecretArn>,
    cache_prefixes: BTreeMap<String, String>,
}

impl NativeAccess {
    /// Records the secret for an upstream host (hosts compare without case).
    pub fn with_credential(mut self, host: &str, arn: SecretArn) -> NativeAccess {
        self.credentials.insert(host.to_ascii_lowercase(), arn);
        self
    }

    /// Records a pull-through cache rule of the region.
    pub fn with_cache_prefix(mut self, upstream_registry_url: &str, prefix: &str) -> NativeAccess {
        self.cache_prefixes.insert(
            upstream_registry_url.to_ascii_lowercase(),
            prefix.to_string(),
        );
        self
    }

    pub fn credential(&self, host: &str) -> Option<&SecretArn> {
        self.credentials.get(&host.to_ascii_lowercase())
    }

    pub fn cache_prefix(&self, upstream_registry_url: &str) -> Option<&str> {
        self.cache_prefixes
            .get(&upstream_registry_url.to_ascii_lowercase())
            .map(String::as_str)
    }

    pub fn credentials(&self) -> impl Iterator<Item = (&str, &SecretArn)> {
        self.credentials
            .iter()
            .map(|(host, arn)| (host.as_str(), arn))
    }
}

/// Reads `--credential HOST=ARN`: a registry HealthOmics copies from, and its secret's ARN.
pub fn parse_credential_arg(text: &str) -> Result<(String, SecretArn), String> {
    let (host, arn) = text
        .split_once('=')
        .ok_or_else(|| "expected HOST=SECRET_ARN".to_string())?;
    let host = host.trim().to_ascii_lowercase();
    if !healthomics_copies_from(&host) {
        return Err(format!(
            "HealthOmics copies only from {} (HealthOmics docs, non-PTC registries); {} is not one",
            crate::namespace::HEALTHOMICS_COPIED_UPSTREAMS.join(", "),
            crate::excerpt::quoted(&host)
        ));
    }
    Ok((host, SecretArn::parse(arn.trim())?))
}

/// Sets each image's strategy for `choice`. `ecr_target` says whether the images go to ECR:
/// HealthOmics fetches only into ECR, so any other target keeps every image as planned.
pub fn choose_strategies(
    plan: &mut PullPlan,
    choice: StrategyChoice,
    access: &NativeAccess,
    ecr_target: bool,
) {
    for image in &mut plan.images {
        let host = image.source.domain().to_ascii_lowercase();
        let planned = Strategy::of_method(image.method);
        let copied_upstream = image.method == Method::Copy && healthomics_copies_from(&host);
        let credential = access.credential(&host).is_some();
        image.strategy = match (choice, image.method) {
            _ if !ecr_target => planned,
            (StrategyChoice::Copy, _) => planned,
            (StrategyChoice::Native, Method::PullThroughCache) => Strategy::Native,
            (StrategyChoice::Auto, Method::PullThroughCache) => Strategy::Prime,
            (_, Method::Copy) if copied_upstream && credential => Strategy::Native,
            (StrategyChoice::Native, Method::Copy) if copied_upstream => {
                image.warnings.push(format!(
                    "copied: HealthOmics needs a credential to fetch from {host}; give \
                     --credential {host}=SECRET_ARN or run `setup --credential-file`"
                ));
                Strategy::Copy
            }
            (StrategyChoice::Native, Method::Copy) => {
                image.warnings.push(format!(
                    "copied: HealthOmics cannot fetch from {host} itself (neither a pull-through \
                     cache upstream nor one it copies from)"
                ));
                Strategy::Copy
            }
            (StrategyChoice::Auto, Method::Copy) => Strategy::Copy,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest_file::parse_pull_manifest;
    use crate::namespace::NamespaceTable;
    use crate::pull_plan::plan_pull;

    const ARN: &str =
        "arn:aws:secretsmanager:us-east-1:111122223333:secret:omics-registry/nvcr-AbCdEf";

    fn strategies(
        choice: StrategyChoice,
        access: &NativeAccess,
        ecr: bool,
    ) -> Vec<(Strategy, usize)> {
        let entries = parse_pull_manifest(
            r#"{"manifest": ["quay.io/biocontainers/samtools:1.17--h00cdaf9_0",
                "nvcr.io/nvidia/clara/parabricks:4.2", "gcr.io/p/tool:1", "ubuntu:22.04",
                "us.gcr.io/p/other:1"]}"#,
        )
        .unwrap();
        let registry = if ecr {
            "ecr://123456789012/us-east-1"
        } else {
            "127.0.0.1:5000"
        };
        let mut plan = plan_pull(
            &entries.entries,
            &NamespaceTable::builtin(),
            &registry.parse().unwrap(),
        );
        choose_strategies(&mut plan, choice, access, ecr);
        plan.images
            .iter()
            .map(|i| (i.strategy, i.warnings.len()))
            .collect()
    }

    #[test]
    fn auto_goes_native_only_where_a_credential_exists() {
        use Strategy::*;
        let access =
            NativeAccess::default().with_credential("NVCR.io", SecretArn::parse(ARN).unwrap());
        assert_eq!(
            strategies(StrategyChoice::Auto, &access, true),
            vec![(Prime, 0), (Native, 0), (Copy, 0), (Copy, 0), (Copy, 0)]
        );
        assert_eq!(
            strategies(StrategyChoice::Copy, &access, true),
            vec![(Prime, 0), (Copy, 0), (Copy, 0), (Copy, 0), (Copy, 0)]
        );
        // Native: the cache is not primed, gcr.io lacks its credential, Docker Hub and us.gcr.io
        // are not fetched by HealthOmics: each copy says why.
        assert_eq!(
            strategies(StrategyChoice::Native, &access, true),
            vec![(Native, 0), (Native, 0), (Copy, 1), (Copy, 1), (Copy, 1)]
        );
        assert_eq!(
            strategies(StrategyChoice::Native, &access, false),
            vec![(Prime, 0), (Copy, 0), (Copy, 0), (Copy, 0), (Copy, 0)]
        );
    }

    #[test]
    fn secret_arns_follow_the_model_pattern() {
        for good in [
            ARN,
            "arn:aws-us-gov:secretsmanager:us-gov-west-1:111122223333:secret:a",
            "arn:aws-cn:secretsmanager:cn-north-1:111122223333:secret:x/y_z+=.@-1",
        ] {
            assert!(SecretArn::parse(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("arn:aws:secret:x", "20 to 2048"),
            (
                "arn:aws:secretsmanager:us-east-1:111122223333:secret:",
                "secret name",
            ),
            (
                "arn:aws:s3:us-east-1:111122223333:secret:name-long",
                "secretsmanager",
            ),
            (
                "arn:aws:secretsmanager:us-east-1:1111222233:secret:name",
                "12 digits",
            ),
            (
                "arn:aws:secretsmanager:US-EAST-1:111122223333:secret:name",
                "region",
            ),
            (
                "arn:aws:secretsmanager:us-east-1:111122223333:secret:na me",
                "secret name",
            ),
            (
                "arn:awsx:secretsmanager:us-east-1:111122223333:secret:name",
                "arn:aws",
            ),
            ("omics-registry/nvcr-secret-name", "fields"),
        ] {
            let error = SecretArn::parse(bad).unwrap_err();
            assert!(error.contains(why), "{bad}: {error}");
        }
    }

    #[test]
    fn credential_args_name_a_copied_registry() {
        let (host, arn) = parse_credential_arg(&format!("NVCR.IO={ARN}")).unwrap();
        assert_eq!((host.as_str(), arn.as_str()), ("nvcr.io", ARN));
        let error = parse_credential_arg(&format!("quay.io={ARN}")).unwrap_err();
        assert!(error.contains("\"quay.io\" is not one"), "{error}");
        assert!(parse_credential_arg("nvcr.io")
            .unwrap_err()
            .contains("HOST=SECRET_ARN"));
    }
}
