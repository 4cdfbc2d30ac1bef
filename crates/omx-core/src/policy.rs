//! ECR resource policies: the repository statement that lets HealthOmics pull, the registry statement
//! that lets HealthOmics fill pull-through-cache repositories, and how each is merged into a policy
//! the account already has.
//!
//! Merging is deliberately conservative:
//! - every statement and top-level key we do not own is copied through *verbatim* (its original
//!   JSON text, not a re-serialisation), so a merge never reorders, reformats or drops what someone
//!   else wrote;
//! - a policy that already lets omics do what we need — however it is spelled: `Action` as a string
//!   or array, `ecr:*`/`ecr:Batch*` wildcards, any `Sid`, `Principal` `"*"` or a service array — is
//!   left alone (`PolicyChange::Unchanged`), so ECR is not written to at all;
//! - an unconditional `Deny` that hits omics is reported (`PolicyError::DeniedByExisting`): in IAM an
//!   `Allow` can never override a `Deny`, so adding ours would look like success and still fail
//!   every workflow run.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{json, Value};

/// The `Sid` of the repository statement this tool owns.
pub const OMICS_SID: &str = "omics workflow access";

/// The `Sid` of the registry statement this tool owns (pull-through cache import).
pub const OMICS_REGISTRY_SID: &str = "omics pull through cache";

/// The service principal of AWS HealthOmics.
pub const OMICS_SERVICE_PRINCIPAL: &str = "omics.amazonaws.com";

/// What HealthOmics needs on a private repository to pull an image from it.
pub const OMICS_PULL_ACTIONS: [&str; 3] = [
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
];

/// What HealthOmics needs in the registry policy to create pull-through-cache repositories and
/// import images into them on first pull.
pub const OMICS_IMPORT_ACTIONS: [&str; 2] =
    ["ecr:CreateRepository", "ecr:BatchImportUpstreamImage"];

/// The resource tag put on every repository this tool creates, so they can be found (and cleaned
/// up) later without guessing from names.
pub const CREATED_BY_TAG: (&str, &str) = ("createdBy", "omx-ecr-helper");

/// The policy language version of every policy document this tool writes from scratch.
pub const POLICY_VERSION: &str = "2012-10-17";

/// The outcome of merging our statement into an existing policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyChange {
    /// The existing policy already grants what we need; nothing must be written.
    Unchanged,
    /// The policy document (JSON) to write in place of the existing one.
    Updated(String),
}

/// Why an existing policy could not be merged. The messages do not name the repository or
/// registry: the caller knows which one it read the policy from and adds that.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("the existing policy is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("the existing policy is not an IAM policy document: {0}")]
    NotAPolicy(String),
    #[error(
        "existing statement {} denies {OMICS_SERVICE_PRINCIPAL} {}; an Allow cannot override a \
         Deny, so the policy was left as it is (remove or narrow that statement)",
        sid.as_deref().map(|s| format!("{s:?}")).unwrap_or_else(|| "(without Sid)".to_string()),
        actions.join(", ")
    )]
    DeniedByExisting {
        sid: Option<String>,
        actions: Vec<String>,
    },
}

/// The AWS partition a region belongs to; it decides ARNs and DNS names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partition {
    Aws,
    AwsCn,
    AwsUsGov,
}

impl Partition {
    /// The partition of `region` (`cn-north-1` is `aws-cn`, `us-gov-west-1` is `aws-us-gov`).
    pub fn of_region(region: &str) -> Partition {
        if region.starts_with("cn-") {
            Partition::AwsCn
        } else if region.starts_with("us-gov-") {
            Partition::AwsUsGov
        } else {
            Partition::Aws
        }
    }

    /// The partition as written in ARNs.
    pub fn arn_name(self) -> &'static str {
        match self {
            Partition::Aws => "aws",
            Partition::AwsCn => "aws-cn",
            Partition::AwsUsGov => "aws-us-gov",
        }
    }

    /// The DNS suffix of service endpoints in this partition.
    pub fn dns_suffix(self) -> &'static str {
        match self {
            Partition::AwsCn => "amazonaws.com.cn",
            Partition::Aws | Partition::AwsUsGov => "amazonaws.com",
        }
    }
}

/// A permission we want a policy to give a service principal: the statement we add when it is
/// missing, and the test an existing policy must pass to count as already granting it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The `Sid` of the statement we own; an existing statement with this `Sid` that falls short is
    /// replaced rather than left beside ours.
    pub sid: String,
    pub service_principal: String,
    pub actions: Vec<String>,
    /// `None` for repository policies, whose statements apply to the repository itself and carry
    /// no `Resource`.
    pub resources: Option<Vec<String>>,
}

impl Grant {
    /// The repository statement letting HealthOmics pull images.
    pub fn omics_pull() -> Grant {
        Grant {
            sid: OMICS_SID.to_string(),
            service_principal: OMICS_SERVICE_PRINCIPAL.to_string(),
            actions: OMICS_PULL_ACTIONS.iter().map(|a| a.to_string()).collect(),
            resources: None,
        }
    }

    /// The registry statement letting HealthOmics create repositories under `prefix` and import
    /// upstream images into them through a pull-through-cache rule.
    pub fn omics_import(region: &str, account: &str, prefix: &str) -> Grant {
        Grant {
            sid: OMICS_REGISTRY_SID.to_string(),
            service_principal: OMICS_SERVICE_PRINCIPAL.to_string(),
            actions: OMICS_IMPORT_ACTIONS.iter().map(|a| a.to_string()).collect(),
            resources: Some(vec![repository_prefix_arn(region, account, prefix)]),
        }
    }

    /// The statement itself, as JSON.
    pub fn statement(&self) -> Value {
        serde_json::from_str(&self.statement_text()).expect("statement_text writes valid JSON")
    }

    /// The statement as written into a policy: keys in the order people read them (`Sid`,
    /// `Effect`, `Principal`, `Action`, `Resource`), spelled out here rather than left to
    /// `serde_json`'s map ordering, which a `preserve_order` feature anywhere in the build would
    /// change.
    pub fn statement_text(&self) -> String {
        let mut text = format!(
            "{{\"Sid\":{},\"Effect\":\"Allow\",\"Principal\":{{\"Service\":{}}},\"Action\":{}",
            json_text(&json!(self.sid)),
            json_text(&json!(self.service_principal)),
            json_text(&json!(self.actions)),
        );
        if let Some(resources) = &self.resources {
            text.push_str(",\"Resource\":");
            text.push_str(&json_text(&json!(resources)));
        }
        text.push('}');
        text
    }

    /// A whole policy document holding only this statement.
    pub fn policy_document(&self) -> String {
        render(
            &[
                ("Version".to_string(), json_text(&json!(POLICY_VERSION))),
                ("Statement".to_string(), String::new()),
            ],
            Some(&[self.statement_text()]),
        )
    }
}

/// `arn:<partition>:ecr:<region>:<account>:repository/<prefix>/*`: every repository under `prefix`.
pub fn repository_prefix_arn(region: &str, account: &str, prefix: &str) -> String {
    let partition = Partition::of_region(region).arn_name();
    let prefix = prefix.trim_matches('/');
    format!("arn:{partition}:ecr:{region}:{account}:repository/{prefix}/*")
}

/// Merges the HealthOmics pull statement into a repository policy (`None`: the repository has
/// none yet).
pub fn merge_omics_statement(existing: Option<&str>) -> Result<PolicyChange, PolicyError> {
    merge_grant(existing, &Grant::omics_pull())
}

/// Merges the HealthOmics import statement for repositories under `prefix` into a registry policy.
/// An existing statement with our registry `Sid` keeps the resources it already lists (other
/// prefixes set up earlier), with ours added.
pub fn merge_omics_registry_statement(
    existing: Option<&str>,
    region: &str,
    account: &str,
    prefix: &str,
) -> Result<PolicyChange, PolicyError> {
    merge_grant(existing, &Grant::omics_import(region, account, prefix))
}

/// Does this repository policy let HealthOmics pull? A policy that is not valid JSON grants
/// nothing; neither does one whose grant is cancelled by an unconditional `Deny`.
pub fn omics_grants(policy: &str) -> bool {
    let Ok(document) = Document::parse(policy) else {
        return false;
    };
    let grant = Grant::omics_pull();
    let statements = document.statement_values();
    denials(&statements, &grant).is_none() && grants(&statements, &grant)
}

/// Merges `grant` into `existing`: unchanged when already granted, otherwise the statement with
/// our `Sid` is replaced (or ours appended) and everything else is kept verbatim.
pub fn merge_grant(existing: Option<&str>, grant: &Grant) -> Result<PolicyChange, PolicyError> {
    let Some(existing) = existing.filter(|text| !text.trim().is_empty()) else {
        return Ok(PolicyChange::Updated(grant.policy_document()));
    };
    let document = Document::parse(existing)?;
    let statements = document.statement_values();
    if let Some((sid, actions)) = denials(&statements, grant) {
        return Err(PolicyError::DeniedByExisting { sid, actions });
    }
    if grants(&statements, grant) {
        return Ok(PolicyChange::Unchanged);
    }

    let mut merged = Vec::with_capacity(document.statements.len() + 1);
    let mut placed = false;
    for (raw, value) in document.statements.iter().zip(&statements) {
        if value.get("Sid").and_then(Value::as_str) != Some(grant.sid.as_str()) {
            merged.push(raw.get().to_string());
        } else if !placed {
            // Our Sid, but short of the grant: take its place. A registry statement keeps the
            // resources it listed, so setting up a second prefix does not revoke the first.
            let mut ours = grant.clone();
            if let (Some(wanted), Some(listed)) = (&grant.resources, strings(value.get("Resource")))
            {
                let mut union = listed;
                for resource in wanted {
                    if !union.contains(resource) {
                        union.push(resource.clone());
                    }
                }
                ours.resources = Some(union);
            }
            merged.push(ours.statement_text());
            placed = true;
        }
        // A second statement with our Sid is dropped: ECR rejects duplicate Sids.
    }
    if !placed {
        merged.push(grant.statement_text());
    }

    let mut keys = document.keys;
    if !keys.iter().any(|(key, _)| key == "Statement") {
        keys.push(("Statement".to_string(), String::new()));
    }
    Ok(PolicyChange::Updated(render(&keys, Some(&merged))))
}

/// An existing policy document, kept as the original JSON text of each top-level value and of each
/// statement, so what we do not change is written back exactly as it was.
struct Document {
    /// Top-level keys in document order with their raw JSON text; `Statement`'s text is unused.
    keys: Vec<(String, String)>,
    statements: Vec<Box<RawValue>>,
}

impl Document {
    fn parse(text: &str) -> Result<Document, PolicyError> {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let entries =
            deserializer
                .deserialize_map(OrderedEntries)
                .map_err(|e| match e.classify() {
                    serde_json::error::Category::Data => {
                        PolicyError::NotAPolicy("the document is not a JSON object".to_string())
                    }
                    _ => PolicyError::InvalidJson(e.to_string()),
                })?;
        deserializer
            .end()
            .map_err(|e| PolicyError::InvalidJson(e.to_string()))?;

        let mut statements = None;
        let mut keys = Vec::with_capacity(entries.len());
        for (key, raw) in entries {
            if keys.iter().any(|(seen, _)| *seen == key) {
                return Err(PolicyError::NotAPolicy(format!(
                    "key {key:?} appears twice"
                )));
            }
            if key == "Statement" {
                statements = Some(parse_statements(&raw)?);
                keys.push((key, String::new()));
            } else {
                keys.push((key, raw.get().to_string()));
            }
        }
        Ok(Document {
            keys,
            statements: statements.unwrap_or_default(),
        })
    }

    fn statement_values(&self) -> Vec<Value> {
        self.statements
            .iter()
            // Each raw statement was checked to be a JSON object when it was parsed.
            .map(|raw| serde_json::from_str(raw.get()).unwrap_or(Value::Null))
            .collect()
    }
}

fn parse_statements(raw: &RawValue) -> Result<Vec<Box<RawValue>>, PolicyError> {
    let text = raw.get();
    let statements: Vec<Box<RawValue>> = if text.starts_with('[') {
        serde_json::from_str(text).map_err(|e| PolicyError::InvalidJson(e.to_string()))?
    } else if text.starts_with('{') {
        vec![raw.to_owned()]
    } else {
        return Err(PolicyError::NotAPolicy(
            "Statement is neither an object nor an array".to_string(),
        ));
    };
    for (index, statement) in statements.iter().enumerate() {
        if !statement.get().starts_with('{') {
            return Err(PolicyError::NotAPolicy(format!(
                "statement {index} is not a JSON object"
            )));
        }
    }
    Ok(statements)
}

/// Reads a JSON object as its entries in document order, each value kept as raw text.
struct OrderedEntries;

impl<'de> Visitor<'de> for OrderedEntries {
    type Value = Vec<(String, Box<RawValue>)>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry::<String, Box<RawValue>>()? {
            entries.push(entry);
        }
        Ok(entries)
    }
}

/// Writes a policy document: one top-level key per line and one statement per line, with the
/// original text of everything we kept.
fn render(keys: &[(String, String)], statements: Option<&[String]>) -> String {
    let mut out = String::from("{\n");
    for (index, (key, raw)) in keys.iter().enumerate() {
        out.push_str("  ");
        out.push_str(&json_text(&json!(key)));
        out.push_str(": ");
        match statements.filter(|_| key == "Statement") {
            Some(statements) => {
                out.push_str("[\n");
                for (i, statement) in statements.iter().enumerate() {
                    out.push_str("    ");
                    out.push_str(statement);
                    out.push_str(if i + 1 < statements.len() {
                        ",\n"
                    } else {
                        "\n"
                    });
                }
                out.push_str("  ]");
            }
            None => out.push_str(raw),
        }
        out.push_str(if index + 1 < keys.len() { ",\n" } else { "\n" });
    }
    out.push('}');
    out
}

fn json_text(value: &Value) -> String {
    // Serialising a `Value` cannot fail: its keys are strings.
    serde_json::to_string(value).unwrap_or_default()
}

/// Is every action of `grant`, on every resource it names, allowed to its principal by some
/// `Allow` statement? An `Allow` with a `Condition` counts: whoever wrote it chose to scope omics'
/// access, and widening it behind their back is not ours to do.
fn grants(statements: &[Value], grant: &Grant) -> bool {
    let resources: Vec<Option<&str>> = match &grant.resources {
        Some(resources) => resources.iter().map(|r| Some(r.as_str())).collect(),
        None => vec![None],
    };
    grant.actions.iter().all(|action| {
        resources.iter().all(|resource| {
            statements.iter().any(|statement| {
                effect(statement) == Some(Effect::Allow)
                    && names_principal(statement, &grant.service_principal)
                    && covers_action(statement, action)
                    && covers_resource(statement, *resource, Effect::Allow)
            })
        })
    })
}

/// The first unconditional `Deny` statement that takes any of `grant`'s actions from its principal,
/// with the actions it takes. A conditional `Deny` is left to IAM: it may well be the usual
/// confused-deputy guard (`aws:SourceAccount`), under which our `Allow` still works.
fn denials(statements: &[Value], grant: &Grant) -> Option<(Option<String>, Vec<String>)> {
    statements.iter().find_map(|statement| {
        if effect(statement) != Some(Effect::Deny)
            || statement.get("Condition").is_some()
            || !names_principal(statement, &grant.service_principal)
        {
            return None;
        }
        let resources: Vec<Option<&str>> = match &grant.resources {
            Some(resources) => resources.iter().map(|r| Some(r.as_str())).collect(),
            None => vec![None],
        };
        let denied: Vec<String> = grant
            .actions
            .iter()
            .filter(|action| {
                covers_action(statement, action)
                    && resources
                        .iter()
                        .any(|resource| covers_resource(statement, *resource, Effect::Deny))
            })
            .cloned()
            .collect();
        let sid = statement
            .get("Sid")
            .and_then(Value::as_str)
            .map(str::to_string);
        (!denied.is_empty()).then_some((sid, denied))
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Allow,
    Deny,
}

fn effect(statement: &Value) -> Option<Effect> {
    match statement.get("Effect").and_then(Value::as_str) {
        Some("Allow") => Some(Effect::Allow),
        Some("Deny") => Some(Effect::Deny),
        _ => None,
    }
}

/// Does the statement apply to `service`? `Principal` naming it, `"*"` or `{"AWS": "*"}`
/// (everyone), or a `NotPrincipal` that does not exclude it.
fn names_principal(statement: &Value, service: &str) -> bool {
    if let Some(principal) = statement.get("Principal") {
        principal_includes(principal, service)
    } else if let Some(not_principal) = statement.get("NotPrincipal") {
        !principal_includes(not_principal, service)
    } else {
        false
    }
}

fn principal_includes(principal: &Value, service: &str) -> bool {
    match principal {
        Value::String(everyone) => everyone == "*",
        Value::Object(kinds) => kinds.iter().any(|(kind, names)| {
            let names = strings(Some(names)).unwrap_or_default();
            match kind.as_str() {
                "Service" => names.iter().any(|n| n.eq_ignore_ascii_case(service)),
                "AWS" => names.iter().any(|n| n == "*"),
                _ => false,
            }
        }),
        _ => false,
    }
}

/// Does `Action` (or `NotAction`) cover `action`? Action names are case-insensitive in IAM and may
/// use `*` and `?` wildcards.
fn covers_action(statement: &Value, action: &str) -> bool {
    let action = action.to_ascii_lowercase();
    let matches = |patterns: Vec<String>| {
        patterns
            .iter()
            .any(|p| wildcard_match(&p.to_ascii_lowercase(), &action))
    };
    if let Some(actions) = strings(statement.get("Action")) {
        matches(actions)
    } else if let Some(not_actions) = strings(statement.get("NotAction")) {
        !matches(not_actions)
    } else {
        false
    }
}

/// Does the statement's `Resource` (or `NotResource`) cover `resource`? Repository policies
/// (`resource` is `None`) apply to their repository whatever they say. A registry statement with
/// neither key is read as covering nothing when it would allow and everything when it would deny,
/// the cautious reading each way.
fn covers_resource(statement: &Value, resource: Option<&str>, effect: Effect) -> bool {
    let Some(resource) = resource else {
        return true;
    };
    if let Some(patterns) = strings(statement.get("Resource")) {
        patterns.iter().any(|p| wildcard_match(p, resource))
    } else if let Some(patterns) = strings(statement.get("NotResource")) {
        !patterns.iter().any(|p| wildcard_match(p, resource))
    } else {
        effect == Effect::Deny
    }
}

/// A string or an array of strings (IAM accepts both wherever a list is expected).
fn strings(value: Option<&Value>) -> Option<Vec<String>> {
    match value? {
        Value::String(one) => Some(vec![one.clone()]),
        Value::Array(many) => Some(
            many.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
        ),
        _ => None,
    }
}

/// IAM wildcard matching: `*` is any run of characters, `?` any one character. `text` may itself
/// be a pattern (`repository/prefix/*`); a `?` does not stand for its `*`, so a pattern only covers
/// another when it covers everything the other names.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                backtrack = Some((p, t));
                p += 1;
            }
            Some(&c) if c == text[t] || (c == '?' && text[t] != '*') => {
                p += 1;
                t += 1;
            }
            _ => match backtrack {
                Some((star, consumed)) => {
                    p = star + 1;
                    t = consumed + 1;
                    backtrack = Some((star, consumed + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests;
