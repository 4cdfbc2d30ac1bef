//! `omx-ecr-helper setup`: a region's registry made ready for HealthOmics pull-through caches.

use clap::Args;
use omx_aws::AwsContext;
use omx_puller::{
    check_credential_arn, setup_registry, Action, SetupOptions, SetupReport, Upstream,
};

use omx_core::namespace::NamespaceTable;

use crate::exit::{Outcome, UnusableInput};
use crate::plan::{read_input_file, Format};
use crate::table;

/// Prepare a region's ECR registry for HealthOmics pull-through caches, idempotently.
///
/// For ecr-public (public.ecr.aws), quay (quay.io) and k8s (registry.k8s.io), and for Docker Hub,
/// GitHub, GitLab and Azure when given a Secrets Manager secret with their credentials: a
/// repository creation template for the prefix (applied to pull-through-cache repositories and to
/// pushes that create repositories) giving each repository a policy that lets HealthOmics pull
/// and the tag createdBy=omx-ecr-helper; the registry policy statement letting
/// omics.amazonaws.com create repositories under the prefix and import upstream images into them;
/// and the pull-through-cache rule. Everything already in place is left alone; a rule for the
/// prefix that caches another upstream is reported and never replaced (exit 1).
///
/// Prints what it changed (with --dry-run what it would change, making only read calls), and the
/// namespace rules `pull --namespaces FILE` needs to prime images of the new caches instead of
/// copying them.
#[derive(Args, Debug)]
pub struct SetupArgs {
    /// AWS region to set up (default: the credential chain's region).
    #[arg(long)]
    pub region: Option<String>,

    /// AWS profile to use.
    #[arg(long)]
    pub profile: Option<String>,

    /// Cache Docker Hub under dockerhub/ with the credentials in this Secrets Manager secret
    /// (its name must start with ecr-pullthroughcache/).
    #[arg(long, value_name = "ARN", value_parser = parse_secret_arn)]
    pub dockerhub_secret: Option<String>,

    /// Cache ghcr.io under ghcr/ with the credentials in this secret.
    #[arg(long, value_name = "ARN", value_parser = parse_secret_arn)]
    pub ghcr_secret: Option<String>,

    /// Cache registry.gitlab.com under gitlab/ with the credentials in this secret.
    #[arg(long, value_name = "ARN", value_parser = parse_secret_arn)]
    pub gitlab_secret: Option<String>,

    /// Cache the Azure registry of --azure-registry under azure/ with the credentials in this
    /// secret.
    #[arg(long, value_name = "ARN", value_parser = parse_secret_arn, requires = "azure_registry")]
    pub azure_secret: Option<String>,

    /// The Azure container registry to cache: NAME.azurecr.io.
    #[arg(long, value_name = "HOST", value_parser = parse_azure_registry, requires = "azure_secret")]
    pub azure_registry: Option<String>,

    /// A namespace file (as `pull --namespaces` takes): its pull-through-cache rules are set up
    /// too, each caching its upstream_registry (or its host) under its namespace, anonymously.
    /// A rule for the prefix of a built-in upstream replaces that upstream.
    #[arg(long, value_name = "FILE")]
    pub namespaces: Option<std::path::PathBuf>,

    /// Read and report what would change; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

fn parse_secret_arn(value: &str) -> Result<String, String> {
    check_credential_arn(value.trim()).map(|()| value.trim().to_string())
}

fn parse_azure_registry(value: &str) -> Result<String, String> {
    let host = value.trim().to_ascii_lowercase();
    let name = host.strip_suffix(".azurecr.io").unwrap_or_default();
    let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric());
    if valid {
        Ok(host)
    } else {
        Err(format!(
            "{value:?} is not an Azure container registry host: expected NAME.azurecr.io"
        ))
    }
}

impl SetupArgs {
    /// The upstreams to set up, in the order they are worked on: the namespace file's first, then
    /// the built-in ones whose prefix it does not take.
    fn upstreams(&self) -> anyhow::Result<Vec<Upstream>> {
        let mut upstreams = self.namespace_file_upstreams()?;
        for upstream in Upstream::anonymous() {
            if !upstreams.iter().any(|u| u.prefix == upstream.prefix) {
                upstreams.push(upstream);
            }
        }
        if let Some(arn) = &self.dockerhub_secret {
            upstreams.push(Upstream::docker_hub(arn));
        }
        if let Some(arn) = &self.ghcr_secret {
            upstreams.push(Upstream::github(arn));
        }
        if let Some(arn) = &self.gitlab_secret {
            upstreams.push(Upstream::gitlab(arn));
        }
        if let (Some(arn), Some(host)) = (&self.azure_secret, &self.azure_registry) {
            upstreams.push(Upstream::azure(host, arn));
        }
        Ok(upstreams)
    }

    fn namespace_file_upstreams(&self) -> anyhow::Result<Vec<Upstream>> {
        let Some(path) = &self.namespaces else {
            return Ok(Vec::new());
        };
        let builtin = NamespaceTable::builtin();
        let table = builtin
            .clone()
            .with_user_rules(&read_input_file(path)?)
            .map_err(|e| UnusableInput(format!("{}: {e}", crate::plan::shown_path(path))))?;
        // The user's rules come first in the table, the built-in ones after them.
        let user_rules = &table.rules()[..table.rules().len() - builtin.rules().len()];
        Ok(user_rules
            .iter()
            .filter_map(Upstream::from_namespace_rule)
            .collect())
    }
}

pub async fn run(args: SetupArgs) -> anyhow::Result<Outcome> {
    let upstreams = args.upstreams()?;
    let context = AwsContext::load(args.region.clone(), args.profile.clone()).await?;
    let account = context.account_id().await?.to_string();
    let options = SetupOptions::new(&account, args.dry_run);
    let report = setup_registry(&context.ecr(), &upstreams, &options).await;
    crate::output::print_report(args.format, &report, |value| {
        render(value, context.region(), args.dry_run)
    })?;
    Ok(if report.all_ok() {
        Outcome::Success
    } else {
        Outcome::PartialFailure
    })
}

fn action_word(action: Action) -> &'static str {
    match action {
        Action::Created => "created",
        Action::Updated => "updated",
        Action::Unchanged => "unchanged",
        Action::WouldCreate => "would create",
        Action::WouldUpdate => "would update",
        Action::Conflict => "CONFLICT",
        Action::Failed => "FAILED",
        Action::Skipped => "skipped",
    }
}

fn render(report: &SetupReport, region: &str, dry_run: bool) -> String {
    let rows: Vec<Vec<String>> = report
        .steps
        .iter()
        .map(|step| {
            vec![
                step.prefix.clone(),
                step.resource.to_string(),
                action_word(step.action).to_string(),
                step.detail.clone(),
            ]
        })
        .collect();
    let mut out = table::render(&["PREFIX", "RESOURCE", "ACTION", "DETAIL"], &rows);
    let problems = report
        .steps
        .iter()
        .filter(|step| step.action.is_problem())
        .count();
    out.push_str(&format!(
        "\n{region}: {} step(s){}, {problems} conflict(s) or failure(s)\n",
        report.steps.len(),
        if dry_run { " checked (dry run)" } else { "" }
    ));
    if !report.namespace_rules.is_empty() {
        let file = serde_json::json!({ "rules": report.namespace_rules });
        out.push_str(
            "\nThe built-in namespace table copies these upstreams' images. To prime them through \
             their new cache instead, give `pull` a namespace file (--namespaces FILE) with:\n",
        );
        out.push_str(&serde_json::to_string_pretty(&file).unwrap_or_default());
        out.push('\n');
        if report
            .namespace_rules
            .iter()
            .any(|rule| rule["namespace"] == "dockerhub")
        {
            out.push_str(
                "Docker Hub images then keep their full path (dockerhub/library/ubuntu, not \
                 dockerhub/ubuntu), as ECR's cache needs; images copied earlier stay where they are.\n",
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Harness {
        #[command(flatten)]
        args: SetupArgs,
    }

    const SECRET: &str =
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-pullthroughcache/hub-AbCdEf";

    #[test]
    fn secrets_add_upstreams_in_order() {
        let harness = Harness::try_parse_from([
            "setup",
            "--dockerhub-secret",
            SECRET,
            "--azure-secret",
            SECRET,
            "--azure-registry",
            "MyLab.azurecr.io",
            "--dry-run",
        ])
        .unwrap();
        let prefixes: Vec<String> = harness
            .args
            .upstreams()
            .unwrap()
            .into_iter()
            .map(|u| format!("{}={}", u.prefix, u.upstream_url))
            .collect();
        assert_eq!(
            prefixes,
            [
                "ecr-public=public.ecr.aws",
                "quay=quay.io",
                "k8s=registry.k8s.io",
                "dockerhub=registry-1.docker.io",
                "azure=mylab.azurecr.io",
            ]
        );
        assert!(harness.args.dry_run);
    }

    #[test]
    fn the_table_shows_every_step_and_the_namespace_rules_pull_needs() {
        use omx_puller::{Resource, SetupStep};
        let step = |prefix: &str, resource, action, detail: &str| SetupStep {
            prefix: prefix.to_string(),
            resource,
            action,
            detail: detail.to_string(),
        };
        let report = SetupReport {
            steps: vec![
                step(
                    "quay",
                    Resource::PullThroughCacheRule,
                    Action::Conflict,
                    "quay/ already caches mirror.example.org; left as it is",
                ),
                step(
                    "dockerhub",
                    Resource::CreationTemplate,
                    Action::WouldCreate,
                    "would create",
                ),
            ],
            namespace_rules: vec![
                serde_json::json!({"hosts": ["docker.io"], "namespace": "dockerhub",
                "method": "pull-through-cache", "upstream_registry": "registry-1.docker.io"}),
            ],
        };
        let text = render(&report, "us-east-1", true);
        assert!(
            text.starts_with(
                "PREFIX     RESOURCE                 ACTION        DETAIL\n\
                 quay       pull-through cache rule  CONFLICT      quay/ already caches mirror.example.org; left as it is\n\
                 dockerhub  creation template        would create  would create\n\
                 \n\
                 us-east-1: 2 step(s) checked (dry run), 1 conflict(s) or failure(s)\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("\"upstream_registry\": \"registry-1.docker.io\""),
            "{text}"
        );
        assert!(text.contains("dockerhub/library/ubuntu"), "{text}");
    }

    #[test]
    fn bad_secrets_and_hosts_are_refused() {
        for bad in [
            vec![
                "setup",
                "--ghcr-secret",
                "arn:aws:secretsmanager:us-east-1:1:secret:ghcr",
            ],
            vec!["setup", "--azure-secret", SECRET],
            vec!["setup", "--azure-registry", "lab.azurecr.io"],
            vec![
                "setup",
                "--azure-secret",
                SECRET,
                "--azure-registry",
                "lab.example.org",
            ],
        ] {
            assert!(Harness::try_parse_from(&bad).is_err(), "{bad:?}");
        }
    }
}
