//! The ECR control plane (AWS JSON 1.1, `X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.*`)
//! for the calls omx-ecr-helper makes and its tests need, on the stand-in's one state. Shapes,
//! error names and rules follow the Amazon ECR API Reference; where moto answers 500 (pull-through
//! cache rules, creation templates) this is the only emulation the project has.
//!
//! (Just over 600 lines with its tests: one dispatcher and a short handler per ECR action.)

use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Map, Value};

use super::state::{
    epoch_seconds, CreationTemplate, EcrState, PullThroughRule, Repository, RepositoryOrigin,
};
use super::Shared;
use crate::http::base64_encode;

/// What ECR's `expiresAt` claims for every token: 12 hours (ECR user guide, "Private registry
/// authentication"). The token really dies earlier when the credentials behind it do
/// (amazon-ecr-credential-helper #7, #679): [`super::EcrBuilder::token_lifetime`].
const CLAIMED_TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);

pub(crate) type Answer = (u16, Value);

/// Each image id asked for: its digest and the tag it was asked by, or its failure entry.
type ResolvedIds = Result<Vec<Result<(String, Option<String>), Value>>, Answer>;

fn error(kind: &str, message: impl Into<String>) -> Answer {
    (400, json!({"__type": kind, "message": message.into()}))
}

fn ok(body: Value) -> Answer {
    (200, body)
}

/// Answers one control-plane call.
pub(crate) fn handle(shared: &Shared, operation: &str, input: &Value) -> Answer {
    if operation == "BatchGetImage" {
        // The manifest bytes live in the backing registry: they are read without the lock.
        let name = text(input, "repositoryName");
        let wanted = input["imageIds"].as_array().cloned().unwrap_or_default();
        let found = resolve_image_ids(&shared.state(), name, &wanted);
        return batch_get_image(shared, name, found);
    }
    let mut state = shared.state();
    let state = &mut *state;
    match operation {
        "GetAuthorizationToken" => get_authorization_token(state),
        "CreateRepository" => create_repository(state, input),
        "DescribeRepositories" => describe_repositories(state, input),
        "DeleteRepository" => delete_repository(state, input),
        "ListTagsForResource" => with_repository_arn(state, input, |_, repository| {
            ok(json!({"tags": tags_json(&repository.resource_tags)}))
        }),
        "TagResource" => tag_resource(state, input),
        "GetRepositoryPolicy" => {
            with_repository(state, input, |state, repository| match &repository.policy {
                Some(policy) => ok(json!({
                    "registryId": state.account,
                    "repositoryName": repository.name,
                    "policyText": policy,
                })),
                None => error(
                    "RepositoryPolicyNotFoundException",
                    "Repository policy does not exist for the repository with name",
                ),
            })
        }
        "SetRepositoryPolicy" => set_repository_policy(state, input),
        "GetRegistryPolicy" => match &state.registry_policy {
            Some(policy) => ok(json!({"registryId": state.account, "policyText": policy})),
            None => error(
                "RegistryPolicyNotFoundException",
                format!(
                    "Registry policy does not exist in the registry with id '{}'",
                    state.account
                ),
            ),
        },
        "PutRegistryPolicy" => match policy_text(input) {
            Ok(policy) => {
                state.registry_policy = Some(policy.clone());
                ok(json!({"registryId": state.account, "policyText": policy}))
            }
            Err(answer) => answer,
        },
        "PutImageTagMutability" => put_image_tag_mutability(state, input),
        "DescribeImages" => describe_images(state, input),
        "CreatePullThroughCacheRule" => create_rule(state, input),
        "DescribePullThroughCacheRules" => describe_rules(state, input),
        "CreateRepositoryCreationTemplate" => create_template(state, input),
        "UpdateRepositoryCreationTemplate" => update_template(state, input),
        "DescribeRepositoryCreationTemplates" => describe_templates(state, input),
        "PutAccountSetting" => {
            let (name, value) = (text(input, "name"), text(input, "value"));
            state
                .account_settings
                .insert(name.to_string(), value.to_string());
            ok(json!({"name": name, "value": value}))
        }
        "GetAccountSetting" => {
            let name = text(input, "name");
            let value = state
                .account_settings
                .get(name)
                .cloned()
                .unwrap_or_else(|| "DISABLED".to_string());
            ok(json!({"name": name, "value": value}))
        }
        other => error(
            "UnknownOperationException",
            format!("the ECR stand-in does not implement {other}"),
        ),
    }
}

fn text<'a>(input: &'a Value, key: &str) -> &'a str {
    input[key].as_str().unwrap_or_default()
}

fn tags_json(tags: &[(String, String)]) -> Vec<Value> {
    tags.iter()
        .map(|(key, value)| json!({"Key": key, "Value": value}))
        .collect()
}

fn get_authorization_token(state: &mut EcrState) -> Answer {
    state.tokens_issued += 1;
    let password = format!("ecr-stand-in-token-{}", state.tokens_issued);
    let until = Instant::now() + state.token_lifetime;
    state.tokens.insert(password.clone(), until);
    ok(json!({"authorizationData": [{
        "authorizationToken": base64_encode(format!("AWS:{password}").as_bytes()),
        "expiresAt": epoch_seconds(SystemTime::now() + CLAIMED_TOKEN_LIFETIME),
        "proxyEndpoint": format!("https://{}", state.registry_host()),
    }]}))
}

/// ECR repository names: 2–256 characters of lower-case letters, digits and `._-/` separators
/// between alphanumeric runs (ECR API Reference, CreateRepository `repositoryName` pattern
/// `(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*`).
pub(crate) fn valid_repository_name(name: &str) -> bool {
    (2..=256).contains(&name.len())
        && name.split('/').all(|component| {
            !component.is_empty()
                && component.split(['.', '_', '-']).all(|run| {
                    !run.is_empty()
                        && run
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                })
        })
}

fn create_repository(state: &mut EcrState, input: &Value) -> Answer {
    let name = text(input, "repositoryName");
    if !valid_repository_name(name) {
        return error(
            "InvalidParameterException",
            format!("Invalid parameter at 'repositoryName' failed to satisfy constraint: '{name}'"),
        );
    }
    if state.repositories.contains_key(name) {
        return error(
            "RepositoryAlreadyExistsException",
            format!(
                "The repository with name '{name}' already exists in the registry with id '{}'",
                state.account
            ),
        );
    }
    let mut repository = Repository::new(name, RepositoryOrigin::Api);
    repository.resource_tags = input["tags"]
        .as_array()
        .map(|tags| {
            tags.iter()
                .filter_map(|t| Some((t["Key"].as_str()?.into(), t["Value"].as_str()?.into())))
                .collect()
        })
        .unwrap_or_default();
    if let Some(mutability) = input["imageTagMutability"].as_str() {
        repository.tag_mutability = mutability.to_string();
    }
    repository.mutability_exclusions = exclusion_filters(input);
    let answer = ok(json!({"repository": state.repository_json(&repository)}));
    state.repositories.insert(name.to_string(), repository);
    answer
}

fn exclusion_filters(input: &Value) -> Vec<String> {
    input["imageTagMutabilityExclusionFilters"]
        .as_array()
        .map(|filters| {
            filters
                .iter()
                .filter_map(|f| f["filter"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn not_found(state: &EcrState, name: &str) -> Answer {
    error(
        "RepositoryNotFoundException",
        format!(
            "The repository with name '{name}' does not exist in the registry with id '{}'",
            state.account
        ),
    )
}

fn with_repository(
    state: &mut EcrState,
    input: &Value,
    then: impl FnOnce(&EcrState, &Repository) -> Answer,
) -> Answer {
    let name = text(input, "repositoryName");
    match state.repositories.get(name) {
        Some(repository) => then(state, repository),
        None => not_found(state, name),
    }
}

fn with_repository_arn(
    state: &mut EcrState,
    input: &Value,
    then: impl FnOnce(&EcrState, &Repository) -> Answer,
) -> Answer {
    let arn = text(input, "resourceArn");
    let name = arn.split_once(":repository/").map_or("", |(_, name)| name);
    match state.repositories.get(name) {
        Some(repository) => then(state, repository),
        None => not_found(state, name),
    }
}

fn describe_repositories(state: &mut EcrState, input: &Value) -> Answer {
    let repositories: Vec<Value> = match input["repositoryNames"].as_array() {
        Some(names) => {
            let mut listed = Vec::new();
            for name in names.iter().filter_map(Value::as_str) {
                match state.repositories.get(name) {
                    Some(repository) => listed.push(state.repository_json(repository)),
                    None => return not_found(state, name),
                }
            }
            listed
        }
        None => state
            .repositories
            .values()
            .map(|repository| state.repository_json(repository))
            .collect(),
    };
    ok(json!({"repositories": repositories}))
}

fn delete_repository(state: &mut EcrState, input: &Value) -> Answer {
    let name = text(input, "repositoryName");
    match state.repositories.remove(name) {
        Some(repository) => ok(json!({"repository": state.repository_json(&repository)})),
        None => not_found(state, name),
    }
}

fn tag_resource(state: &mut EcrState, input: &Value) -> Answer {
    let arn = text(input, "resourceArn");
    let name = arn
        .split_once(":repository/")
        .map_or("", |(_, name)| name)
        .to_string();
    let Some(repository) = state.repositories.get_mut(&name) else {
        return not_found(state, &name);
    };
    for tag in input["tags"].as_array().into_iter().flatten() {
        let (Some(key), Some(value)) = (tag["Key"].as_str(), tag["Value"].as_str()) else {
            continue;
        };
        repository
            .resource_tags
            .retain(|(existing, _)| existing != key);
        repository
            .resource_tags
            .push((key.to_string(), value.to_string()));
    }
    ok(json!({}))
}

fn policy_text(input: &Value) -> Result<String, Answer> {
    let policy = text(input, "policyText");
    match serde_json::from_str::<Value>(policy) {
        Ok(parsed) if parsed.is_object() => Ok(policy.to_string()),
        _ => Err(error(
            "InvalidParameterException",
            "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid repository policy provided'",
        )),
    }
}

fn set_repository_policy(state: &mut EcrState, input: &Value) -> Answer {
    let name = text(input, "repositoryName").to_string();
    let policy = match policy_text(input) {
        Ok(policy) => policy,
        Err(answer) => return answer,
    };
    let account = state.account.clone();
    let Some(repository) = state.repositories.get_mut(&name) else {
        return not_found(state, &name);
    };
    repository.policy = Some(policy.clone());
    ok(json!({"registryId": account, "repositoryName": name, "policyText": policy}))
}

fn put_image_tag_mutability(state: &mut EcrState, input: &Value) -> Answer {
    let name = text(input, "repositoryName").to_string();
    let Some(repository) = state.repositories.get_mut(&name) else {
        return not_found(state, &name);
    };
    repository.tag_mutability = text(input, "imageTagMutability").to_string();
    repository.mutability_exclusions = exclusion_filters(input);
    ok(json!({"repositoryName": name, "imageTagMutability": repository.tag_mutability}))
}

/// `(digest, tag asked for)` of each image id that exists, or the failure for it.
fn resolve_image_ids(state: &EcrState, name: &str, wanted: &[Value]) -> ResolvedIds {
    let Some(repository) = state.repositories.get(name) else {
        return Err(not_found(state, name));
    };
    let all: Vec<Value> = if wanted.is_empty() {
        repository
            .images
            .keys()
            .map(|digest| json!({"imageDigest": digest}))
            .collect()
    } else {
        wanted.to_vec()
    };
    Ok(all
        .iter()
        .map(|id| {
            let tag = id["imageTag"].as_str();
            let digest = match (tag, id["imageDigest"].as_str()) {
                (Some(tag), _) => repository.image_tags.get(tag).cloned(),
                (None, Some(digest)) => repository
                    .images
                    .contains_key(digest)
                    .then(|| digest.to_string()),
                (None, None) => None,
            };
            match digest {
                Some(digest) => Ok((digest, tag.map(str::to_string))),
                None => Err(json!({"imageId": id, "failureCode": "ImageNotFound",
                    "failureReason": "Requested image not found"})),
            }
        })
        .collect())
}

fn describe_images(state: &mut EcrState, input: &Value) -> Answer {
    let name = text(input, "repositoryName");
    let wanted = input["imageIds"].as_array().cloned().unwrap_or_default();
    let resolved = match resolve_image_ids(state, name, &wanted) {
        Ok(resolved) => resolved,
        Err(answer) => return answer,
    };
    let repository = &state.repositories[name];
    let mut details = Vec::new();
    for found in resolved {
        let Ok((digest, _)) = found else {
            // DescribeImages fails the whole call for an id it cannot find (API Reference:
            // ImageNotFoundException), unlike BatchGetImage's per-id failures.
            return error(
                "ImageNotFoundException",
                format!("The image requested does not exist in the specified repository '{name}'"),
            );
        };
        let image = &repository.images[&digest];
        let tags: Vec<&String> = repository
            .image_tags
            .iter()
            .filter(|(_, d)| **d == digest)
            .map(|(tag, _)| tag)
            .collect();
        let mut detail = json!({
            "registryId": state.account,
            "repositoryName": name,
            "imageDigest": digest,
            "imageSizeInBytes": image.size,
            "imagePushedAt": epoch_seconds(image.pushed_at),
            "imageManifestMediaType": image.media_type,
        });
        if !tags.is_empty() {
            detail["imageTags"] = json!(tags);
        }
        details.push(detail);
    }
    ok(json!({"imageDetails": details}))
}

fn batch_get_image(shared: &Shared, name: &str, resolved: ResolvedIds) -> Answer {
    let resolved = match resolved {
        Ok(resolved) => resolved,
        Err(answer) => return answer,
    };
    let (mut images, mut failures) = (Vec::new(), Vec::new());
    for found in resolved {
        match found {
            Err(failure) => failures.push(failure),
            Ok((digest, tag)) => match shared.backing_manifest(name, &digest) {
                Some((media_type, bytes)) => {
                    let mut image_id = json!({"imageDigest": digest});
                    if let Some(tag) = tag {
                        image_id["imageTag"] = json!(tag);
                    }
                    images.push(json!({
                        "registryId": shared.account(),
                        "repositoryName": name,
                        "imageId": image_id,
                        "imageManifest": String::from_utf8_lossy(&bytes),
                        "imageManifestMediaType": media_type,
                    }));
                }
                None => failures.push(json!({"imageId": {"imageDigest": digest},
                    "failureCode": "ImageNotFound", "failureReason": "Requested image not found"})),
            },
        }
    }
    ok(json!({"images": images, "failures": failures}))
}

fn rule_json(state: &EcrState, rule: &PullThroughRule) -> Value {
    let mut value = json!({
        "ecrRepositoryPrefix": rule.prefix,
        "upstreamRegistryUrl": rule.upstream_registry_url,
        "createdAt": epoch_seconds(rule.created_at),
        "registryId": state.account,
    });
    if let Some(arn) = &rule.credential_arn {
        value["credentialArn"] = json!(arn);
    }
    value
}

fn create_rule(state: &mut EcrState, input: &Value) -> Answer {
    let prefix = text(input, "ecrRepositoryPrefix");
    if state.rules.iter().any(|rule| rule.prefix == prefix) {
        return error(
            "PullThroughCacheRuleAlreadyExistsException",
            format!("A pull through cache rule with prefix '{prefix}' already exists"),
        );
    }
    let rule = PullThroughRule {
        prefix: prefix.to_string(),
        upstream_registry_url: text(input, "upstreamRegistryUrl").to_string(),
        credential_arn: input["credentialArn"].as_str().map(str::to_string),
        created_at: SystemTime::now(),
    };
    let answer = ok(rule_json(state, &rule));
    state.rules.push(rule);
    answer
}

/// The items named in `input[field]` (each must exist, else `missing` answers for it), or all of
/// them when the call names none: how the `Describe*` calls read their filters.
fn selected<'a, T>(
    items: &'a [T],
    input: &Value,
    field: &str,
    key: impl Fn(&T) -> &str,
    missing: impl Fn(&str) -> Answer,
) -> Result<Vec<&'a T>, Answer> {
    let Some(wanted) = input[field].as_array() else {
        return Ok(items.iter().collect());
    };
    wanted
        .iter()
        .filter_map(Value::as_str)
        .map(|name| {
            items
                .iter()
                .find(|item| key(item) == name)
                .ok_or_else(|| missing(name))
        })
        .collect()
}

fn describe_rules(state: &mut EcrState, input: &Value) -> Answer {
    let rules = selected(
        &state.rules,
        input,
        "ecrRepositoryPrefixes",
        |rule| &rule.prefix,
        |prefix| {
            error(
                "PullThroughCacheRuleNotFoundException",
                format!("The pull through cache rule with prefix '{prefix}' does not exist"),
            )
        },
    );
    match rules {
        Ok(rules) => {
            let listed: Vec<Value> = rules.iter().map(|rule| rule_json(state, rule)).collect();
            ok(json!({"pullThroughCacheRules": listed}))
        }
        Err(answer) => answer,
    }
}

fn template_json(state: &EcrState, template: &CreationTemplate) -> Value {
    let mut value = Value::Object(template.members.clone());
    value["prefix"] = json!(template.prefix);
    value["registryId"] = json!(state.account);
    value
}

fn template_members(input: &Value) -> Map<String, Value> {
    let mut members = input.as_object().cloned().unwrap_or_default();
    members.remove("prefix");
    members
}

fn create_template(state: &mut EcrState, input: &Value) -> Answer {
    let prefix = text(input, "prefix");
    if state.templates.iter().any(|t| t.prefix == prefix) {
        return error(
            "TemplateAlreadyExistsException",
            format!("A repository creation template with prefix '{prefix}' already exists"),
        );
    }
    let template = CreationTemplate {
        prefix: prefix.to_string(),
        members: template_members(input),
    };
    let answer = ok(json!({
        "registryId": state.account,
        "repositoryCreationTemplate": template_json(state, &template),
    }));
    state.templates.push(template);
    answer
}

fn update_template(state: &mut EcrState, input: &Value) -> Answer {
    let prefix = text(input, "prefix").to_string();
    let Some(at) = state.templates.iter().position(|t| t.prefix == prefix) else {
        return error(
            "TemplateNotFoundException",
            format!("The repository creation template with prefix '{prefix}' does not exist"),
        );
    };
    for (key, value) in template_members(input) {
        state.templates[at].members.insert(key, value);
    }
    let template = state.templates[at].clone();
    ok(json!({
        "registryId": state.account,
        "repositoryCreationTemplate": template_json(state, &template),
    }))
}

fn describe_templates(state: &mut EcrState, input: &Value) -> Answer {
    let templates = selected(
        &state.templates,
        input,
        "prefixes",
        |template| &template.prefix,
        // What ECR answers for an unknown prefix (omx-aws reads it so).
        |prefix| {
            error(
                "TemplateNotFoundException",
                format!("The repository creation template with prefix '{prefix}' does not exist"),
            )
        },
    );
    match templates {
        Ok(templates) => {
            let listed: Vec<Value> = templates.iter().map(|t| template_json(state, t)).collect();
            ok(json!({"registryId": state.account, "repositoryCreationTemplates": listed}))
        }
        Err(answer) => answer,
    }
}

#[cfg(test)]
mod tests {
    use super::valid_repository_name;

    #[test]
    fn repository_names_follow_the_ecr_pattern() {
        for good in [
            "ubuntu",
            "quay/biocontainers/samtools",
            "a.b_c-d/e1",
            "dockerhub/library/ubuntu",
        ] {
            assert!(valid_repository_name(good), "{good}");
        }
        for bad in [
            "",
            "a",
            "Upper/case",
            "trailing/",
            "/leading",
            "double//slash",
            "a..b",
            "-x",
            "x-",
        ] {
            assert!(!valid_repository_name(bad), "{bad}");
        }
    }
}
