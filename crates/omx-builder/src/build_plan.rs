//! What `build` will do for each entry of a build manifest, decided before any network call.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use omx_core::manifest_file::{BuildEntry, Entries, EntryError};
use omx_core::namespace::check_ecr_repository_name;
use omx_core::pull_plan::TargetRegistry;
use omx_core::{Reference, RegistryHost};

use crate::source::BundleSource;

/// Where one built image goes: a repository and a tag of the target registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BuildTarget {
    /// `foo` or `mynamespace/foo`, exactly as the manifest names it.
    pub repository: String,
    pub tag: String,
}

impl BuildTarget {
    /// Reads a `target_image`: `foo:omics`, `mynamespace/foo:omics`, or either behind the
    /// target registry's host. A tag is required (a build that silently becomes `latest` is a
    /// workflow that silently changes); a digest cannot be asked for (the build makes a new one);
    /// another registry's host is refused rather than ignored.
    pub fn parse(input: &str, registry: &TargetRegistry) -> Result<BuildTarget, String> {
        let input = input.trim();
        if input.contains('@') {
            return Err(format!(
                "{input:?} names a digest: a build makes a new image, name it by tag instead"
            ));
        }
        // Docker's rule: the first component is a registry host when it has a '.' or a ':'
        // or is `localhost`.
        let rest = match input.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                if !registry_is(registry, first) {
                    return Err(format!(
                        "{input:?} names registry {first}, but images go to {registry}: drop \
                         the host, or pass --registry {first}"
                    ));
                }
                rest
            }
            _ => input,
        };
        let Some((repository, tag)) = rest.rsplit_once(':').filter(|(_, tag)| !tag.contains('/'))
        else {
            return Err(format!(
                "{input:?} names no tag: give one, such as {rest}:omics (there is no implicit \
                 \"latest\" for builds)"
            ));
        };
        Reference::parse(rest).map_err(|e| e.to_string())?;
        if registry.is_ecr() {
            check_ecr_repository_name(repository)?;
        }
        Ok(BuildTarget {
            repository: repository.to_string(),
            tag: tag.to_string(),
        })
    }

    /// `host/repository:tag`.
    pub fn uri(&self, host: &str) -> String {
        format!("{host}/{}:{}", self.repository, self.tag)
    }

    /// The image as a reference in the registry at `host`.
    pub fn reference(&self, host: &str) -> Result<Reference, omx_core::ReferenceError> {
        Reference::parse(&self.uri(host))
    }
}

impl fmt::Display for BuildTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.repository, self.tag)
    }
}

/// Whether `host` names `registry` (an ECR host matches the account and region given so far).
fn registry_is(registry: &TargetRegistry, host: &str) -> bool {
    match registry {
        TargetRegistry::Oci { host: target } => RegistryHost::new(target) == host.into(),
        TargetRegistry::Ecr {
            account, region, ..
        } => RegistryHost::new(host).ecr().is_some_and(|named| {
            account.as_ref().is_none_or(|a| *a == named.account)
                && region.as_ref().is_none_or(|r| *r == named.region)
        }),
    }
}

/// One image to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedBuild {
    /// Position in the manifest.
    pub index: usize,
    /// The entry's `target_image` as written: the name a workflow uses.
    pub input: String,
    /// The entry's `source_uri` as written.
    pub source_uri: String,
    pub source: BundleSource,
    pub target: BuildTarget,
}

/// The plan of a build manifest: the builds, and the entries that cannot be built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildPlan {
    pub builds: Vec<PlannedBuild>,
    pub errors: Vec<EntryError>,
}

impl BuildPlan {
    /// Plans every entry of a parsed manifest (its entry errors included) for `registry`;
    /// relative local sources are read from `base`. Two entries building the same target are
    /// an error on the second.
    pub fn new(entries: &Entries<BuildEntry>, registry: &TargetRegistry, base: &Path) -> BuildPlan {
        let mut plan = BuildPlan {
            builds: Vec::new(),
            errors: entries.errors.clone(),
        };
        let mut by_target: HashMap<BuildTarget, usize> = HashMap::new();
        for entry in &entries.entries {
            let fail = |error: String| EntryError::new(entry.index, &entry.target_image, error);
            let planned = BundleSource::parse(&entry.source_uri, base).and_then(|source| {
                let target = BuildTarget::parse(&entry.target_image, registry)?;
                Ok((source, target))
            });
            let (source, target) = match planned {
                Ok(planned) => planned,
                Err(error) => {
                    plan.errors.push(fail(error));
                    continue;
                }
            };
            if let Some(first) = by_target.get(&target) {
                plan.errors
                    .push(fail(format!("manifest[{first}] already builds {target}")));
                continue;
            }
            by_target.insert(target.clone(), entry.index);
            plan.builds.push(PlannedBuild {
                index: entry.index,
                input: entry.target_image.clone(),
                source_uri: entry.source_uri.clone(),
                source,
                target,
            });
        }
        plan.errors.sort_by_key(|error| error.index);
        plan
    }

    /// Turns the builds whose bundle is not in S3 into entry errors saying `why`.
    pub fn require_s3_sources(&mut self, why: &str) {
        let (kept, local): (Vec<_>, Vec<_>) = std::mem::take(&mut self.builds)
            .into_iter()
            .partition(|build| build.source.is_s3());
        self.builds = kept;
        self.errors.extend(local.into_iter().map(|build| {
            EntryError::new(
                build.index,
                &build.input,
                format!("{} is not in S3: {why}", build.source_uri),
            )
        }));
        self.errors.sort_by_key(|error| error.index);
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omx_core::manifest_file::parse_build_manifest;

    fn oci(host: &str) -> TargetRegistry {
        TargetRegistry::Oci { host: host.into() }
    }

    fn ecr(account: Option<&str>) -> TargetRegistry {
        TargetRegistry::Ecr {
            account: account.map(str::to_string),
            region: account.map(|_| "us-east-1".to_string()),
            endpoint: Default::default(),
        }
    }

    #[test]
    fn targets_with_and_without_namespace_and_host() {
        let registry = oci("127.0.0.1:5000");
        let target = |repository: &str, tag: &str| BuildTarget {
            repository: repository.into(),
            tag: tag.into(),
        };
        assert_eq!(
            BuildTarget::parse("foo:omics", &registry),
            Ok(target("foo", "omics"))
        );
        assert_eq!(
            BuildTarget::parse("mynamespace/foo:1.0", &registry),
            Ok(target("mynamespace/foo", "1.0"))
        );
        assert_eq!(
            BuildTarget::parse("127.0.0.1:5000/mynamespace/foo:1.0", &registry),
            Ok(target("mynamespace/foo", "1.0"))
        );
        let host = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
        for registry in [ecr(None), ecr(Some("123456789012"))] {
            assert_eq!(
                BuildTarget::parse(&format!("{host}/foo:omics"), &registry),
                Ok(target("foo", "omics"))
            );
        }
        assert_eq!(
            target("ns/foo", "1").uri("r.example:5000"),
            "r.example:5000/ns/foo:1"
        );
    }

    #[test]
    fn bad_targets_say_why() {
        let registry = oci("127.0.0.1:5000");
        for (input, registry, expected) in [
            ("foo", &registry, "names no tag"),
            ("ns/foo", &registry, "names no tag"),
            ("127.0.0.1:5000/foo", &registry, "names no tag"),
            ("quay.io/foo:1", &registry, "names registry quay.io"),
            ("localhost/foo:1", &registry, "names registry localhost"),
            ("foo@sha256:abc", &registry, "names a digest"),
            ("Foo:1", &registry, "must be lowercase"),
            ("foo:bad tag", &registry, "whitespace"),
            ("foo__bar:1", &ecr(None), "not a valid ECR repository name"),
            (
                "999999999999.dkr.ecr.us-east-1.amazonaws.com/foo:1",
                &ecr(Some("123456789012")),
                "names registry",
            ),
        ] {
            let error = BuildTarget::parse(input, registry).unwrap_err();
            assert!(error.contains(expected), "{input}: {error}");
        }
    }

    #[test]
    fn plans_every_entry_and_reports_the_others_by_index() {
        let entries = parse_build_manifest(
            r#"{"manifest": [
                {"source_uri": "s3://bucket/a/", "target_image": "a:1"},
                {"source_uri": "bundles/b.zip", "target_image": "ns/b:1"},
                {"source_uri": "s3://bucket/c/", "target_image": "c"},
                {"source_uri": "s3://bucket/d/", "target_image": "a:1"},
                {"source_uri": "ftp://x/y", "target_image": "e:1"},
                {"source_uri": "s3://bucket/f/"}
            ]}"#,
        )
        .unwrap();
        let mut plan = BuildPlan::new(&entries, &oci("r.example"), Path::new("/m"));
        let targets: Vec<String> = plan.builds.iter().map(|b| b.target.to_string()).collect();
        assert_eq!(targets, ["a:1", "ns/b:1"]);
        assert_eq!(
            plan.builds[1].source,
            BundleSource::LocalZip("/m/bundles/b.zip".into())
        );
        let errors: Vec<(usize, &str)> = plan
            .errors
            .iter()
            .map(|e| (e.index, e.error.as_str()))
            .collect();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].0 == 2 && errors[0].1.contains("names no tag"));
        assert!(errors[1].0 == 3 && errors[1].1.contains("manifest[0] already builds a:1"));
        assert!(errors[2].0 == 4 && errors[2].1.contains("unsupported source"));
        assert!(errors[3].0 == 5 && errors[3].1.contains("missing field"));

        plan.require_s3_sources("upload it to S3 first");
        assert_eq!(plan.builds.len(), 1);
        let local = plan.errors.iter().find(|e| e.index == 1).unwrap();
        assert_eq!(
            local.error,
            "bundles/b.zip is not in S3: upload it to S3 first"
        );
    }
}
