//! `omx-ecr-helper setup`: a region's registry made ready for HealthOmics pull-through caches.

use clap::Args;
use omx_puller::{
    check_credential_arn, read_credential_file, setup_registry, setup_registry_secrets, Action,
    RegistryCredential, SetupOptions, SetupReport, Upstream,
};

use omx_core::namespace::NamespaceTable;

use crate::args::read_input_file;
use crate::exit::{Outcome, UnusableInput};
use crate::output::Format;
use crate::table;

/// Prepare a region's ECR registry for HealthOmics pull-through caches (and, with
/// --credential-file, the secrets of registries HealthOmics copies from), idempotently.
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
    #[command(flatten)]
    pub aws: crate::args::AwsArgs,

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

    /// Also keep the credentials of registries HealthOmics copies from itself (nvcr.io, gcr.io,
    /// REGION-docker.pkg.dev, community.wave.seqera.io, wave.seqera.io) in Secrets Manager, one
    /// secret omics-registry/HOST each ({"username", "accessToken"}), created or updated only
    /// when its value differs. The file holds no secret, only where to find it:
    /// {"registries": [{"host": "nvcr.io", "username": "$oauthtoken", "access_token_env": "NGC_API_KEY"}]}
    /// takes the token from the environment variable NGC_API_KEY. Prints the --credential
    /// HOST=ARN that pull, plan and map take; the workflow role needs
    /// secretsmanager:GetSecretValue on these secrets.
    #[arg(long, value_name = "FILE")]
    pub credential_file: Option<std::path::PathBuf>,

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

    /// The credentials of --credential-file, tokens taken from the environment; a bad file is
    /// unusable input, found before any AWS call.
    fn registry_credentials(&self) -> anyhow::Result<Vec<RegistryCredential>> {
        let Some(path) = &self.credential_file else {
            return Ok(Vec::new());
        };
        read_credential_file(&read_input_file(path)?, |name| std::env::var(name).ok())
            .map_err(|e| UnusableInput(format!("{}: {e}", crate::args::shown_path(path))).into())
    }

    /// The namespace table with the --namespaces file's rules in front.
    fn namespace_table(&self) -> anyhow::Result<NamespaceTable> {
        let builtin = NamespaceTable::builtin();
        let Some(path) = &self.namespaces else {
            return Ok(builtin);
        };
        builtin
            .with_user_rules(&read_input_file(path)?)
            .map_err(|e| UnusableInput(format!("{}: {e}", crate::args::shown_path(path))).into())
    }

    fn namespace_file_upstreams(&self) -> anyhow::Result<Vec<Upstream>> {
        if self.namespaces.is_none() {
            return Ok(Vec::new());
        }
        let builtin = NamespaceTable::builtin();
        let table = self.namespace_table()?;
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
    let credentials = args.registry_credentials()?;
    let context = args.aws.load().await?;
    let account = context.account_id().await?.to_string();
    let options = SetupOptions::new(&account, args.dry_run);
    let mut report = setup_registry(&context.ecr(), &upstreams, &options).await;
    if !credentials.is_empty() {
        let table = args.namespace_table()?;
        let (steps, secrets) = setup_registry_secrets(
            &context.secrets_manager(),
            &credentials,
            &table,
            args.dry_run,
        )
        .await;
        report.steps.extend(steps);
        report.credentials = secrets;
    }
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
    if !report.credentials.is_empty() {
        out.push_str(
            "\nHealthOmics copies these registries' images itself with their secret; give pull, \
             plan and map:\n",
        );
        for secret in &report.credentials {
            out.push_str(&format!(
                "  --credential {}={}\n",
                secret.host, secret.credential_arn
            ));
        }
    }
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
            credentials: Vec::new(),
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
