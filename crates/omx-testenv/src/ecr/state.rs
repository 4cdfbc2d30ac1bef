//! What the ECR stand-in knows: repositories and their images, policies, pull-through-cache
//! rules, creation templates, account settings and issued tokens. The registry API and the
//! control plane both read and change this one state, so what is pushed over `/v2` is what
//! `DescribeImages` reports, as in real ECR.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// Media types of manifests that list other manifests.
pub(crate) const INDEX_MEDIA_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// How a repository came to exist; pull-through-cache repositories cannot be mount sources
/// (AWS ECR user guide, "Blob mounting in Amazon ECR": "Blob mounting is not supported for
/// images created via pull through cache").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepositoryOrigin {
    /// `CreateRepository`.
    Api,
    /// A push under a `CREATE_ON_PUSH` creation template.
    CreateOnPush,
    /// A first pull through a pull-through-cache rule.
    PullThroughCache,
}

/// One manifest a repository holds.
#[derive(Debug, Clone)]
pub(crate) struct StoredImage {
    pub(crate) media_type: String,
    pub(crate) size: u64,
    pub(crate) pushed_at: SystemTime,
    /// Config and layer digests (image manifests) or child manifest digests (indexes).
    pub(crate) references: Vec<String>,
    /// Until then a pull by digest answers 404: a child of an index imported through the cache
    /// may not be readable at the instant the index answers (the import order is undocumented:
    /// ECR user guide, "Pull through cache" — pulling an index imports every image it lists).
    pub(crate) readable_from: Instant,
}

/// A repository, as `DescribeRepositories` and the registry API see it.
#[derive(Debug, Clone)]
pub struct Repository {
    pub name: String,
    pub origin: RepositoryOrigin,
    pub created_at: SystemTime,
    /// Resource tags (`TagResource`, `ListTagsForResource`), in order.
    pub resource_tags: Vec<(String, String)>,
    pub policy: Option<String>,
    /// `MUTABLE`, `IMMUTABLE`, `IMMUTABLE_WITH_EXCLUSION` or `MUTABLE_WITH_EXCLUSION`.
    pub tag_mutability: String,
    /// Wildcard filters exempted from (or, for `MUTABLE_WITH_EXCLUSION`, subject to)
    /// immutability.
    pub mutability_exclusions: Vec<String>,
    /// Image tag -> manifest digest.
    pub image_tags: BTreeMap<String, String>,
    pub(crate) images: HashMap<String, StoredImage>,
    /// Pull-through-cache tags: when upstream was last checked (ECR re-checks at most once per
    /// 24 hours: ECR user guide, "Sync an upstream registry with an Amazon ECR private registry").
    pub(crate) last_upstream_check: HashMap<String, Instant>,
}

impl Repository {
    pub(crate) fn new(name: &str, origin: RepositoryOrigin) -> Repository {
        Repository {
            name: name.to_string(),
            origin,
            created_at: SystemTime::now(),
            resource_tags: Vec::new(),
            policy: None,
            tag_mutability: "MUTABLE".to_string(),
            mutability_exclusions: Vec::new(),
            image_tags: BTreeMap::new(),
            images: HashMap::new(),
            last_upstream_check: HashMap::new(),
        }
    }

    /// Whether pushing `tag` again is refused. Immutable tags refuse every push to an existing
    /// tag, even of the same digest (aws/containers-roadmap #2380, #2179; moby/buildkit #3776);
    /// exclusion filters use `*` wildcards (ECR user guide, "Image tag mutability"). Written
    /// apart from omx-core's `TagMutability` on purpose: the stand-in must not share the logic
    /// of the code it tests.
    pub(crate) fn tag_is_immutable(&self, tag: &str) -> bool {
        let excluded = self
            .mutability_exclusions
            .iter()
            .any(|filter| wildcard_match(filter, tag));
        match self.tag_mutability.as_str() {
            "IMMUTABLE" => true,
            "IMMUTABLE_WITH_EXCLUSION" => !excluded,
            "MUTABLE_WITH_EXCLUSION" => excluded,
            _ => false,
        }
    }

    /// Whether some manifest of this repository references `digest`: the only blobs ECR mounts
    /// from it (aws/containers-roadmap #2860).
    pub(crate) fn references_blob(&self, digest: &str) -> bool {
        self.images
            .values()
            .any(|image| image.references.iter().any(|r| r == digest))
    }

    pub(crate) fn record_image(&mut self, digest: &str, image: StoredImage, tag: Option<&str>) {
        self.images.insert(digest.to_string(), image);
        if let Some(tag) = tag {
            self.image_tags.insert(tag.to_string(), digest.to_string());
        }
    }
}

/// `*` matches any run of characters; everything else matches itself.
pub(crate) fn wildcard_match(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(remaining) = text.strip_prefix(head) else {
                return false;
            };
            (0..=remaining.len())
                .filter(|at| remaining.is_char_boundary(*at))
                .any(|at| wildcard_match(rest, &remaining[at..]))
        }
    }
}

/// A pull-through-cache rule (`CreatePullThroughCacheRule`).
#[derive(Debug, Clone)]
pub struct PullThroughRule {
    pub prefix: String,
    pub upstream_registry_url: String,
    pub credential_arn: Option<String>,
    pub created_at: SystemTime,
}

/// A repository creation template (`CreateRepositoryCreationTemplate`), kept as the JSON
/// members the API took, so that `Describe` answers what was put.
#[derive(Debug, Clone)]
pub struct CreationTemplate {
    pub prefix: String,
    pub(crate) members: serde_json::Map<String, Value>,
}

impl CreationTemplate {
    pub(crate) fn applies_to(&self, scenario: &str) -> bool {
        self.members
            .get("appliedFor")
            .and_then(Value::as_array)
            .is_some_and(|list| list.iter().any(|s| s.as_str() == Some(scenario)))
    }

    /// Whether the template covers repository `name`: `ROOT` covers every repository, any
    /// other prefix the repositories under `prefix/` (ECR user guide, "Templates to control
    /// repositories created during a pull through cache, create on push, or replication action").
    pub(crate) fn covers(&self, name: &str) -> bool {
        self.prefix == "ROOT" || name.starts_with(&format!("{}/", self.prefix))
    }

    /// Applies the template's policy, tags and tag mutability to a new repository.
    pub(crate) fn apply_to(&self, repository: &mut Repository) {
        let text = |key: &str| self.members.get(key).and_then(Value::as_str);
        repository.policy = text("repositoryPolicy").map(str::to_string);
        if let Some(mutability) = text("imageTagMutability") {
            repository.tag_mutability = mutability.to_string();
        }
        repository.mutability_exclusions = self
            .members
            .get("imageTagMutabilityExclusionFilters")
            .and_then(Value::as_array)
            .map(|filters| {
                filters
                    .iter()
                    .filter_map(|f| f["filter"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        repository.resource_tags = self
            .members
            .get("resourceTags")
            .and_then(Value::as_array)
            .map(|tags| {
                tags.iter()
                    .filter_map(|t| Some((t["Key"].as_str()?.into(), t["Value"].as_str()?.into())))
                    .collect()
            })
            .unwrap_or_default();
    }
}

/// The parts of one chunked upload sent so far.
#[derive(Debug, Default)]
pub(crate) struct UploadParts {
    pub(crate) sizes: Vec<u64>,
    /// The `Range` ECR answered the first part with, which it keeps answering for every later
    /// part although it stores them (aws/containers-roadmap #2831).
    pub(crate) first_range: Option<String>,
}

/// Everything the stand-in holds, behind one lock.
#[derive(Debug)]
pub(crate) struct EcrState {
    pub(crate) account: String,
    pub(crate) region: String,
    pub(crate) repositories: BTreeMap<String, Repository>,
    pub(crate) registry_policy: Option<String>,
    pub(crate) rules: Vec<PullThroughRule>,
    pub(crate) templates: Vec<CreationTemplate>,
    /// `PutAccountSetting` values, e.g. `BLOB_MOUNTING` -> `ENABLED`.
    pub(crate) account_settings: BTreeMap<String, String>,
    /// Registry passwords handed out by `GetAuthorizationToken`, and until when each works.
    pub(crate) tokens: HashMap<String, Instant>,
    pub(crate) tokens_issued: u64,
    /// How long a token from now on really works.
    pub(crate) token_lifetime: Duration,
    /// Chunked uploads in progress, by upload path.
    pub(crate) uploads: HashMap<String, UploadParts>,
    pub(crate) put_image_bucket: TokenBucket,
    pub(crate) counters: Counters,
}

/// What the stand-in counted, for tests to assert on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Manifest pushes answered 429 by the PutImage rate limit.
    pub puts_throttled: u64,
    /// Manifest pushes accepted.
    pub puts_accepted: u64,
    /// Images imported through a pull-through-cache rule (one per tag pull that fetched upstream).
    pub imports: u64,
    /// Requests refused with 403 because their token had expired.
    pub expired_token_refusals: u64,
    /// Mount requests answered 201 (mounted) and 202 (an upload session instead).
    pub mounts_granted: u64,
    pub mounts_refused: u64,
    /// Chunked-upload parts refused as too small.
    pub parts_too_small: u64,
    /// Pushes refused because the tag is immutable.
    pub immutable_refusals: u64,
}

impl EcrState {
    pub(crate) fn new(account: &str, region: &str, put_image_rate: Option<f64>) -> EcrState {
        EcrState {
            account: account.to_string(),
            region: region.to_string(),
            repositories: BTreeMap::new(),
            registry_policy: None,
            rules: Vec::new(),
            templates: Vec::new(),
            account_settings: BTreeMap::new(),
            tokens: HashMap::new(),
            tokens_issued: 0,
            token_lifetime: Duration::from_secs(12 * 3600),
            uploads: HashMap::new(),
            put_image_bucket: TokenBucket::new(put_image_rate),
            counters: Counters::default(),
        }
    }

    pub(crate) fn registry_host(&self) -> String {
        format!("{}.dkr.ecr.{}.amazonaws.com", self.account, self.region)
    }

    pub(crate) fn repository_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:ecr:{}:{}:repository/{name}",
            self.region, self.account
        )
    }

    /// The JSON `Repository` shape of the ECR API.
    pub(crate) fn repository_json(&self, repository: &Repository) -> Value {
        json!({
            "repositoryArn": self.repository_arn(&repository.name),
            "registryId": self.account,
            "repositoryName": repository.name,
            "repositoryUri": format!("{}/{}", self.registry_host(), repository.name),
            "createdAt": epoch_seconds(repository.created_at),
            "imageTagMutability": repository.tag_mutability,
            "imageTagMutabilityExclusionFilters": repository
                .mutability_exclusions
                .iter()
                .map(|filter| json!({"filterType": "WILDCARD", "filter": filter}))
                .collect::<Vec<_>>(),
            "imageScanningConfiguration": {"scanOnPush": false},
            "encryptionConfiguration": {"encryptionType": "AES256"},
        })
    }

    /// The rule whose prefix starts repository `name`, longest prefix first.
    pub(crate) fn rule_for(&self, name: &str) -> Option<&PullThroughRule> {
        self.rules
            .iter()
            .filter(|rule| name.starts_with(&format!("{}/", rule.prefix)))
            .max_by_key(|rule| rule.prefix.len())
    }

    /// The template for `scenario` that covers `name`: the longest matching prefix wins, `ROOT`
    /// last.
    pub(crate) fn template_for(&self, name: &str, scenario: &str) -> Option<&CreationTemplate> {
        self.templates
            .iter()
            .filter(|t| t.applies_to(scenario) && t.covers(name))
            .max_by_key(|t| {
                if t.prefix == "ROOT" {
                    0
                } else {
                    t.prefix.len()
                }
            })
    }

    /// Creates repository `name` the way ECR does when a pull or push creates it: with the
    /// settings of the template for `scenario` (a bare repository when none covers it).
    pub(crate) fn create_from_template(
        &mut self,
        name: &str,
        origin: RepositoryOrigin,
        scenario: &str,
    ) -> &mut Repository {
        let mut repository = Repository::new(name, origin);
        if let Some(template) = self.template_for(name, scenario) {
            template.apply_to(&mut repository);
        }
        self.repositories
            .entry(name.to_string())
            .or_insert(repository)
    }

    pub(crate) fn blob_mounting_enabled(&self) -> bool {
        self.account_settings
            .get("BLOB_MOUNTING")
            .map(String::as_str)
            == Some("ENABLED")
    }
}

/// A PutImage rate limit: `rate` requests a second, bursts up to one second's worth. ECR
/// throttles PutImage per account and region (default 10/s, ECR service quotas) and answers 429
/// `TOOMANYREQUESTS: Rate exceeded` without `Retry-After` (containerd #10447,
/// go-containerregistry #750).
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: Option<f64>,
    available: f64,
    updated: Instant,
}

impl TokenBucket {
    pub(crate) fn new(rate: Option<f64>) -> TokenBucket {
        TokenBucket {
            rate,
            available: rate.unwrap_or(0.0),
            updated: Instant::now(),
        }
    }

    pub(crate) fn set_rate(&mut self, rate: Option<f64>) {
        *self = TokenBucket::new(rate);
    }

    /// Takes one request's allowance; `false` when the limit is reached.
    pub(crate) fn take(&mut self) -> bool {
        let Some(rate) = self.rate else {
            return true;
        };
        let now = Instant::now();
        let elapsed = now.duration_since(self.updated).as_secs_f64();
        self.updated = now;
        self.available = (self.available + elapsed * rate).min(rate.max(1.0));
        if self.available >= 1.0 {
            self.available -= 1.0;
            true
        } else {
            false
        }
    }
}

pub(crate) fn epoch_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

/// The digests a manifest references (config and layers, or an index's children), and whether
/// it is an index.
pub(crate) fn manifest_references(body: &[u8]) -> (Vec<String>, bool) {
    let Ok(manifest) = serde_json::from_slice::<Value>(body) else {
        return (Vec::new(), false);
    };
    let digests = |list: &Value| -> Vec<String> {
        list.as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|d| d["digest"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    if manifest.get("manifests").is_some() {
        return (digests(&manifest["manifests"]), true);
    }
    let mut references: BTreeSet<String> = digests(&manifest["layers"]).into_iter().collect();
    if let Some(config) = manifest["config"]["digest"].as_str() {
        references.insert(config.to_string());
    }
    (references.into_iter().collect(), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_ecr_exclusion_filters() {
        assert!(wildcard_match("latest", "latest"));
        assert!(wildcard_match("dev-*", "dev-123"));
        assert!(wildcard_match("*-rc*", "1.0-rc2"));
        assert!(!wildcard_match("dev-*", "prod-1"));
        assert!(!wildcard_match("1.0", "1.0.1"));
    }

    #[test]
    fn immutability_follows_the_mutability_setting_and_exclusions() {
        let mut repository = Repository::new("r", RepositoryOrigin::Api);
        assert!(!repository.tag_is_immutable("1"));
        repository.tag_mutability = "IMMUTABLE".into();
        assert!(repository.tag_is_immutable("1"));
        repository.tag_mutability = "IMMUTABLE_WITH_EXCLUSION".into();
        repository.mutability_exclusions = vec!["latest".into()];
        assert!(repository.tag_is_immutable("1"));
        assert!(!repository.tag_is_immutable("latest"));
    }

    #[test]
    fn the_bucket_allows_its_rate_then_refuses() {
        let mut bucket = TokenBucket::new(Some(3.0));
        assert!((0..3).all(|_| bucket.take()));
        assert!(!bucket.take());
        let mut unlimited = TokenBucket::new(None);
        assert!((0..1000).all(|_| unlimited.take()));
    }
}
