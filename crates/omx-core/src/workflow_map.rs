//! How a workflow reaches the private images, worked out offline from a pull plan: the JSON
//! listing, a WDL inputs file with every image replaced by its private URI, and a Nextflow
//! configuration that gives each process its private container.
//!
//! Nextflow only ever runs the image string a process ends up with, so the configuration sets
//! that string per process: `withName` settings outrank the `container` directive of a process
//! definition, and a private URI names its registry, so `docker.registry` is not put in front of
//! it. A single `docker.registry` setting cannot do the job: Docker Hub images lose `library/` in
//! the private registry, and images with a registry host are never rewritten by it. Which process
//! a container belongs to is read from the text around the line where the image is written.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::lock::unpinned_spelling;
use crate::namespace::NamespaceTable;
use crate::pull_plan::{PlannedImage, PullPlan};
use crate::strategy::Strategy;

/// Finds the planned image a workflow names, by any spelling of it.
#[derive(Debug, Clone, Copy)]
pub struct ImageLookup<'a> {
    plan: &'a PullPlan,
    table: &'a NamespaceTable,
}

impl<'a> ImageLookup<'a> {
    pub fn new(plan: &'a PullPlan, table: &'a NamespaceTable) -> ImageLookup<'a> {
        ImageLookup { plan, table }
    }

    /// The planned image `image` names: one of the manifest's spellings, or any other spelling of
    /// the same reference (`ubuntu:20.04` and `docker.io/library/ubuntu:20.04` are one image; no
    /// tag means `latest`, as it does for `pull`).
    pub fn find(&self, image: &str) -> Option<&'a PlannedImage> {
        let image = image.trim();
        if let Some(planned) = self
            .plan
            .images
            .iter()
            .find(|planned| planned.aliases.iter().any(|alias| alias == image))
        {
            return Some(planned);
        }
        let parsed = self.table.parse_source(image).ok()?;
        let parsed = if parsed.is_implicit_latest() {
            parsed.with_tag("latest").ok()?
        } else {
            parsed
        };
        let planned = self.plan.images.iter();
        planned
            .clone()
            .find(|planned| planned.source == parsed)
            .or_else(|| {
                // A locked manifest pins `name:tag@digest`; a workflow naming `name:tag` means it.
                planned.into_iter().find(|planned| {
                    planned.source.tag().is_some() && planned.source.without_digest() == parsed
                })
            })
    }
}

/// Every spelling of every image in the manifest, with its private URI.
pub fn private_uris(plan: &PullPlan) -> BTreeMap<String, String> {
    plan.images
        .iter()
        .filter(|image| image.strategy != Strategy::Native)
        .flat_map(|image| {
            image
                .aliases
                .iter()
                .flat_map(|alias| std::iter::once(alias.as_str()).chain(unpinned_spelling(alias)))
                .map(|alias| (alias.to_string(), image.target.clone()))
        })
        .collect()
}

/// One value [`rewrite_wdl_inputs`] replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rewrite {
    /// Where the value is: the input's name, then `.key` or `[index]` inside it.
    pub at: String,
    pub from: String,
    pub to: String,
}

/// A WDL inputs document with every string that names a manifest image replaced by the image's
/// private URI, and the list of what was replaced. A string counts as naming an image when it is
/// one of the manifest's spellings, or spells one of its images out with a registry path, tag or
/// digest: a bare word such as `ubuntu` elsewhere in the inputs is more likely a sample name.
pub fn rewrite_wdl_inputs(inputs: &Value, lookup: &ImageLookup<'_>) -> (Value, Vec<Rewrite>) {
    let mut rewrites = Vec::new();
    let rewritten = rewrite_value(inputs, "", lookup, &mut rewrites);
    // Sorted by place, so the list reads the same whether or not serde_json keeps key order
    // (a feature any crate in the build can switch on).
    rewrites.sort_by(|a, b| a.at.cmp(&b.at));
    (rewritten, rewrites)
}

fn rewrite_value(
    value: &Value,
    at: &str,
    lookup: &ImageLookup<'_>,
    rewrites: &mut Vec<Rewrite>,
) -> Value {
    match value {
        Value::String(text) => {
            // A native image keeps its upstream name: HealthOmics fetches it through the map.
            let named = lookup.find(text).filter(|image| {
                image.strategy != Strategy::Native
                    && (image.aliases.iter().any(|alias| alias == text.trim())
                        || text.contains([':', '/', '@']))
            });
            match named {
                Some(image) => {
                    rewrites.push(Rewrite {
                        at: at.to_string(),
                        from: text.clone(),
                        to: image.target.clone(),
                    });
                    Value::String(image.target.clone())
                }
                None => value.clone(),
            }
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(index, item)| {
                    rewrite_value(item, &format!("{at}[{index}]"), lookup, rewrites)
                })
                .collect(),
        ),
        Value::Object(members) => Value::Object(
            members
                .iter()
                .map(|(key, member)| {
                    let at = if at.is_empty() {
                        key.clone()
                    } else {
                        format!("{at}.{key}")
                    };
                    (key.clone(), rewrite_value(member, &at, lookup, rewrites))
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Which processes a Nextflow `container` setting applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum ProcessSelector {
    /// `process.container`: every process without a more specific setting.
    AllProcesses,
    /// `withLabel: LABEL`.
    WithLabel(String),
    /// `withName: NAME` (a process name, or the pattern a configuration file used).
    WithName(String),
}

/// One process container setting of the generated configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerSetting {
    pub selector: ProcessSelector,
    /// The image the workflow names.
    pub image: String,
    pub private_uri: String,
    /// Where the workflow names it (`file:line`).
    pub location: String,
}

/// A container the configuration does not set, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unplaced {
    pub image: String,
    pub location: String,
    pub reason: String,
}

/// A Nextflow configuration giving every process its private container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NextflowConfig {
    pub settings: Vec<ContainerSetting>,
    pub unplaced: Vec<Unplaced>,
}

impl NextflowConfig {
    /// Adds a setting. The same selector set twice to the same URI is kept once; set to another
    /// URI, the later one is listed as unplaced, since Nextflow would run only one of them.
    pub fn add(&mut self, setting: ContainerSetting) {
        match self
            .settings
            .iter()
            .find(|existing| existing.selector == setting.selector)
        {
            Some(existing) if existing.private_uri == setting.private_uri => {}
            Some(existing) => {
                let reason = format!(
                    "{} already gets {} (from {} at {})",
                    describe_selector(&existing.selector),
                    existing.private_uri,
                    existing.image,
                    existing.location
                );
                self.unplaced.push(Unplaced {
                    image: setting.image,
                    location: setting.location,
                    reason,
                });
            }
            None => self.settings.push(setting),
        }
    }

    pub fn add_unplaced(&mut self, unplaced: Unplaced) {
        self.unplaced.push(unplaced);
    }

    /// The configuration file: the settings in a `process` scope (all processes, then labels,
    /// then names, each in the order added), then the unplaced containers as comments.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "// The private container of every process, written by omx-ecr-helper (`map --format nextflow`, `prepare`).\n\
             // Give it last so that it wins: nextflow run <pipeline> -c <this file>\n",
        );
        let mut settings: Vec<&ContainerSetting> = self.settings.iter().collect();
        settings.sort_by_key(|setting| match setting.selector {
            ProcessSelector::AllProcesses => 0,
            ProcessSelector::WithLabel(_) => 1,
            ProcessSelector::WithName(_) => 2,
        });
        out.push_str("process {\n");
        for setting in settings {
            out.push_str(&format!(
                "    // {} ({})\n",
                comment_text(&setting.image),
                comment_text(&setting.location)
            ));
            let assignment = format!("container = {}", groovy_string(&setting.private_uri));
            match &setting.selector {
                ProcessSelector::AllProcesses => out.push_str(&format!("    {assignment}\n")),
                ProcessSelector::WithLabel(value) | ProcessSelector::WithName(value) => {
                    let kind = match setting.selector {
                        ProcessSelector::WithLabel(_) => "withLabel",
                        _ => "withName",
                    };
                    out.push_str(&format!(
                        "    {kind}: {} {{\n        {assignment}\n    }}\n",
                        groovy_string(value)
                    ));
                }
            }
        }
        out.push_str("}\n");
        if !self.unplaced.is_empty() {
            out.push_str(
                "\n// Not set here; give these processes their private container yourself:\n",
            );
            for unplaced in &self.unplaced {
                out.push_str(&format!(
                    "// {} ({}): {}\n",
                    comment_text(&unplaced.image),
                    comment_text(&unplaced.location),
                    comment_text(&unplaced.reason)
                ));
            }
        }
        out
    }
}

fn describe_selector(selector: &ProcessSelector) -> String {
    match selector {
        ProcessSelector::AllProcesses => "process.container".to_string(),
        ProcessSelector::WithLabel(label) => format!("withLabel: {label}"),
        ProcessSelector::WithName(name) => format!("withName: {name}"),
    }
}

/// A single-quoted Groovy string (no interpolation).
fn groovy_string(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Text safe inside a `//` comment: one line.
fn comment_text(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest_file::parse_pull_manifest;
    use crate::pull_plan::plan_pull;
    use crate::registry_map::OutputMap;
    use crate::strategy::NativeAccess;
    use serde_json::json;

    const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

    fn plan(images: &[&str]) -> (PullPlan, NamespaceTable) {
        let table = NamespaceTable::builtin();
        let entries = parse_pull_manifest(&json!({ "manifest": images }).to_string()).unwrap();
        let plan = plan_pull(
            &entries.entries,
            &table,
            &"ecr://123456789012/us-east-1".parse().unwrap(),
        );
        assert!(plan.errors.is_empty(), "{:?}", plan.errors);
        (plan, table)
    }

    #[test]
    fn images_are_found_by_any_spelling() {
        let (plan, table) = plan(&["ubuntu:20.04", "quay.io/biocontainers/x:1", "alpine"]);
        let lookup = ImageLookup::new(&plan, &table);
        let target = |image: &str| lookup.find(image).map(|i| i.target.clone());
        let ubuntu = Some(format!("{HOST}/dockerhub/ubuntu:20.04"));
        assert_eq!(target("ubuntu:20.04"), ubuntu);
        assert_eq!(target(" docker.io/library/ubuntu:20.04"), ubuntu);
        assert_eq!(
            target("quay/biocontainers/x:1"),
            Some(format!("{HOST}/quay/biocontainers/x:1"))
        );
        assert_eq!(
            target("alpine:latest"),
            Some(format!("{HOST}/dockerhub/alpine:latest"))
        );
        assert_eq!(target("ubuntu:22.04"), None);
        assert_eq!(target("s3://bucket/reads.fq"), None);
    }

    #[test]
    fn the_planned_output_map_lists_every_image_and_the_registry_map() {
        let (plan, table) = plan(&["ubuntu:20.04", "quay.io/biocontainers/x:1"]);
        let map = OutputMap::planned(&plan, &table, &NativeAccess::default());
        assert_eq!(map.images.len(), 2);
        assert_eq!(
            map.images[1].target,
            format!("{HOST}/quay/biocontainers/x:1")
        );
        assert_eq!(map.images[1].digest, None);
        assert_eq!(map.container_registry_map.registry_mappings.len(), 1);
        assert_eq!(
            map.container_registry_map.image_mappings[0].source_image,
            "ubuntu:20.04"
        );
    }

    #[test]
    fn private_uris_key_every_spelling() {
        let (plan, _) = plan(&["ubuntu:20.04", "docker.io/library/ubuntu:20.04"]);
        let uris = private_uris(&plan);
        let uri = format!("{HOST}/dockerhub/ubuntu:20.04");
        assert_eq!(
            uris,
            BTreeMap::from([
                ("docker.io/library/ubuntu:20.04".to_string(), uri.clone()),
                ("ubuntu:20.04".to_string(), uri),
            ])
        );
    }

    #[test]
    fn a_locked_image_is_found_and_keyed_by_its_unpinned_spelling() {
        let digest = format!("sha256:{}", "d".repeat(64));
        let (plan, table) = plan(&[&format!("ubuntu:20.04@{digest}")]);
        let uri = format!("{HOST}/dockerhub/ubuntu:20.04@{digest}");
        let lookup = ImageLookup::new(&plan, &table);
        for spelling in ["ubuntu:20.04", "docker.io/library/ubuntu:20.04"] {
            assert_eq!(lookup.find(spelling).map(|i| &i.target), Some(&uri));
        }
        assert_eq!(lookup.find("ubuntu:22.04"), None);
        assert_eq!(private_uris(&plan).get("ubuntu:20.04"), Some(&uri));
    }

    #[test]
    fn wdl_inputs_get_private_uris_and_keep_everything_else() {
        let (plan, table) = plan(&["ubuntu", "quay.io/biocontainers/bwa:0.7.17--he4a0461_11"]);
        let lookup = ImageLookup::new(&plan, &table);
        let inputs = json!({
            "wf.reads": "s3://bucket/reads.fastq.gz",
            "wf.sample": "ubuntu-sample",
            "wf.bwa.docker": "quay.io/biocontainers/bwa:0.7.17--he4a0461_11",
            "wf.base": "ubuntu",
            "wf.images": ["ubuntu:latest", "debian:12", 3],
            "wf.nested": {"docker": "docker.io/library/ubuntu:latest", "threads": 4},
        });
        let (rewritten, rewrites) = rewrite_wdl_inputs(&inputs, &lookup);
        let ubuntu = format!("{HOST}/dockerhub/ubuntu:latest");
        assert_eq!(
            rewritten,
            json!({
                "wf.reads": "s3://bucket/reads.fastq.gz",
                "wf.sample": "ubuntu-sample",
                "wf.bwa.docker": format!("{HOST}/quay/biocontainers/bwa:0.7.17--he4a0461_11"),
                "wf.base": ubuntu,
                "wf.images": [ubuntu, "debian:12", 3],
                "wf.nested": {"docker": ubuntu, "threads": 4},
            })
        );
        let places: Vec<&str> = rewrites.iter().map(|r| r.at.as_str()).collect();
        assert_eq!(
            places,
            [
                "wf.base",
                "wf.bwa.docker",
                "wf.images[0]",
                "wf.nested.docker"
            ]
        );
    }

    #[test]
    fn a_bare_word_is_rewritten_only_when_the_manifest_spells_it_so() {
        let (plan, table) = plan(&["ubuntu:latest"]);
        let lookup = ImageLookup::new(&plan, &table);
        let (rewritten, rewrites) = rewrite_wdl_inputs(&json!({"wf.name": "ubuntu"}), &lookup);
        assert_eq!(rewritten, json!({"wf.name": "ubuntu"}));
        assert!(rewrites.is_empty());
    }

    fn setting(
        selector: ProcessSelector,
        image: &str,
        uri: &str,
        location: &str,
    ) -> ContainerSetting {
        ContainerSetting {
            selector,
            image: image.to_string(),
            private_uri: uri.to_string(),
            location: location.to_string(),
        }
    }

    #[test]
    fn the_configuration_sets_each_selector_once() {
        let mut config = NextflowConfig::default();
        config.add(setting(
            ProcessSelector::WithName("FASTQC".into()),
            "quay.io/biocontainers/fastqc:0.12.1",
            "h/quay/biocontainers/fastqc:0.12.1",
            "main.nf:5",
        ));
        config.add(setting(
            ProcessSelector::AllProcesses,
            "ubuntu:22.04",
            "h/dockerhub/ubuntu:22.04",
            "nextflow.config:3",
        ));
        config.add(setting(
            ProcessSelector::WithLabel("gpu".into()),
            "nvcr.io/x:1",
            "h/nvcr/x:1",
            "nextflow.config:8",
        ));
        // The same again is no change; another image for the same process is not placed.
        config.add(setting(
            ProcessSelector::WithName("FASTQC".into()),
            "quay.io/biocontainers/fastqc:0.12.1",
            "h/quay/biocontainers/fastqc:0.12.1",
            "other.nf:9",
        ));
        config.add(setting(
            ProcessSelector::WithName("FASTQC".into()),
            "quay.io/biocontainers/fastqc:0.11",
            "h/quay/biocontainers/fastqc:0.11",
            "old.nf:2",
        ));
        config.add_unplaced(Unplaced {
            image: "ghcr.io/x/y:1".into(),
            location: "main.wdl:4".into(),
            reason: "not a Nextflow file".into(),
        });
        assert_eq!(
            config.render(),
            "// The private container of every process, written by omx-ecr-helper (`map --format nextflow`, `prepare`).\n\
             // Give it last so that it wins: nextflow run <pipeline> -c <this file>\n\
             process {\n\
             \x20   // ubuntu:22.04 (nextflow.config:3)\n\
             \x20   container = 'h/dockerhub/ubuntu:22.04'\n\
             \x20   // nvcr.io/x:1 (nextflow.config:8)\n\
             \x20   withLabel: 'gpu' {\n\
             \x20       container = 'h/nvcr/x:1'\n\
             \x20   }\n\
             \x20   // quay.io/biocontainers/fastqc:0.12.1 (main.nf:5)\n\
             \x20   withName: 'FASTQC' {\n\
             \x20       container = 'h/quay/biocontainers/fastqc:0.12.1'\n\
             \x20   }\n\
             }\n\
             \n\
             // Not set here; give these processes their private container yourself:\n\
             // quay.io/biocontainers/fastqc:0.11 (old.nf:2): withName: FASTQC already gets h/quay/biocontainers/fastqc:0.12.1 (from quay.io/biocontainers/fastqc:0.12.1 at main.nf:5)\n\
             // ghcr.io/x/y:1 (main.wdl:4): not a Nextflow file\n"
        );
    }
}
