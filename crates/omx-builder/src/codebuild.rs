//! What a CodeBuild build is told: environment variables naming the image, its source digest and
//! the build settings, and (unless the project's own is used) a buildspec that builds and pushes
//! with them.
//!
//! The environment is the contract with a project's own buildspec:
//!
//! | variable | value |
//! | --- | --- |
//! | `OMX_TARGET_IMAGE` | `<account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>` |
//! | `OMX_REGISTRY` | the registry host, for `docker login` |
//! | `OMX_SOURCE_DIGEST` | `sha256:...`, to record as the label below |
//! | `OMX_SOURCE_DIGEST_LABEL` | `org.omx-ecr-helper.source-digest` |
//! | `OMX_DOCKERFILE` | the Dockerfile's path in the bundle |
//! | `OMX_PLATFORM` | `linux/amd64` |
//! | `OMX_BUILD_ARG_COUNT`, `OMX_BUILD_ARG_<i>` | the build arguments, `NAME=value` each |

use std::collections::BTreeMap;

use crate::published::SOURCE_DIGEST_LABEL;

/// The settings of one remote build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemoteBuild<'a> {
    pub target_image: &'a str,
    pub registry: &'a str,
    pub source_digest: &'a str,
    pub dockerfile: &'a str,
    pub platform: &'a str,
    pub build_args: &'a BTreeMap<String, String>,
}

impl RemoteBuild<'_> {
    pub(crate) fn environment(&self) -> Vec<(String, String)> {
        let mut environment: Vec<(String, String)> = [
            ("OMX_TARGET_IMAGE", self.target_image),
            ("OMX_REGISTRY", self.registry),
            ("OMX_SOURCE_DIGEST", self.source_digest),
            ("OMX_SOURCE_DIGEST_LABEL", SOURCE_DIGEST_LABEL),
            ("OMX_DOCKERFILE", self.dockerfile),
            ("OMX_PLATFORM", self.platform),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
        environment.push((
            "OMX_BUILD_ARG_COUNT".to_string(),
            self.build_args.len().to_string(),
        ));
        for (position, (name, value)) in self.build_args.iter().enumerate() {
            environment.push((
                format!("OMX_BUILD_ARG_{position}"),
                format!("{name}={value}"),
            ));
        }
        environment
    }

    /// A buildspec (version 0.2) that logs in to ECR, builds with the label and arguments, and
    /// pushes. Values reach the shell only through the environment variables, double-quoted, so
    /// nothing in them is interpreted.
    pub(crate) fn buildspec(&self) -> String {
        let mut build = String::from(
            "docker build --platform \"$OMX_PLATFORM\" \
             --label \"$OMX_SOURCE_DIGEST_LABEL=$OMX_SOURCE_DIGEST\"",
        );
        for position in 0..self.build_args.len() {
            build.push_str(&format!(" --build-arg \"$OMX_BUILD_ARG_{position}\""));
        }
        build.push_str(" -f \"$OMX_DOCKERFILE\" -t \"$OMX_TARGET_IMAGE\" .");
        let login = "aws ecr get-login-password --region \"$AWS_REGION\" \
                     | docker login --username AWS --password-stdin \"$OMX_REGISTRY\"";
        let push = "docker push \"$OMX_TARGET_IMAGE\"";
        // Each command as a JSON string, which YAML reads as the same string.
        let quoted = |command: &str| serde_json::to_string(command).expect("a string serializes");
        format!(
            "version: 0.2\nenv:\n  variables:\n    DOCKER_BUILDKIT: \"1\"\nphases:\n  \
             pre_build:\n    commands:\n      - {}\n  build:\n    commands:\n      - {}\n      \
             - {}\n",
            quoted(login),
            quoted(&build),
            quoted(push)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_and_buildspec_agree() {
        let args = BTreeMap::from([
            ("B".to_string(), "two words".to_string()),
            ("A".to_string(), "$(rm -rf /)".to_string()),
        ]);
        let remote = RemoteBuild {
            target_image: "123456789012.dkr.ecr.us-east-1.amazonaws.com/ns/tool:1",
            registry: "123456789012.dkr.ecr.us-east-1.amazonaws.com",
            source_digest: "sha256:abc",
            dockerfile: "docker/Dockerfile",
            platform: "linux/amd64",
            build_args: &args,
        };
        let environment = remote.environment();
        let value = |name: &str| {
            environment
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            value("OMX_TARGET_IMAGE"),
            Some("123456789012.dkr.ecr.us-east-1.amazonaws.com/ns/tool:1")
        );
        assert_eq!(value("OMX_SOURCE_DIGEST"), Some("sha256:abc"));
        assert_eq!(value("OMX_SOURCE_DIGEST_LABEL"), Some(SOURCE_DIGEST_LABEL));
        assert_eq!(value("OMX_DOCKERFILE"), Some("docker/Dockerfile"));
        assert_eq!(value("OMX_BUILD_ARG_COUNT"), Some("2"));
        assert_eq!(value("OMX_BUILD_ARG_0"), Some("A=$(rm -rf /)"));
        assert_eq!(value("OMX_BUILD_ARG_1"), Some("B=two words"));

        let buildspec = remote.buildspec();
        assert!(buildspec.starts_with("version: 0.2\n"), "{buildspec}");
        assert!(
            buildspec.contains(
                r#"- "docker build --platform \"$OMX_PLATFORM\" --label \"$OMX_SOURCE_DIGEST_LABEL=$OMX_SOURCE_DIGEST\" --build-arg \"$OMX_BUILD_ARG_0\" --build-arg \"$OMX_BUILD_ARG_1\" -f \"$OMX_DOCKERFILE\" -t \"$OMX_TARGET_IMAGE\" .""#
            ),
            "{buildspec}"
        );
        assert!(buildspec.contains(r#"- "docker push \"$OMX_TARGET_IMAGE\"""#));
        // Values never appear in the buildspec itself.
        assert!(!buildspec.contains("rm -rf") && !buildspec.contains("ns/tool"));
    }
}
