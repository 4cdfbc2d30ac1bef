//! What the deployed state machines take and give (`omx-container-puller` and
//! `omx-container-builder`, infra/lib/manifest-state-machine.ts): the typed payloads the Lambdas
//! answer with and `submit` sends and reads back, so both ends spell them once.
//!
//! An execution's input is `{"manifest": [item, ...]}`. Each item's result is what its Lambda
//! answered, or what a catch or CodeBuild path of the state machine wrote in its place (the
//! same members, some absent). The output is `{"images"|"builds": [result, ...], "total": N}`;
//! an execution with a FAILED item fails instead, with the cause `"K of N image(s) failed:
//! [result, ...]"` (the state machine's "Describe Failures" state), and its "Check Results"
//! state's output holds every result.

use serde::{Deserialize, Deserializer, Serialize};

use crate::digest::Digest;
use crate::report::{ImageReport, ImageStatus};

/// One entry of an execution's `manifest`: an image reference (puller) or a build (builder).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ManifestItem {
    Image(String),
    Build(BuildItem),
}

/// One entry of the builder's manifest, as its Map passes it to `omx-build-prepare`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildItem {
    pub source_uri: String,
    pub target_image: String,
}

impl ManifestItem {
    /// What the item's result is keyed by: the reference, or a build's target image.
    pub fn input(&self) -> &str {
        match self {
            ManifestItem::Image(image) => image,
            ManifestItem::Build(build) => &build.target_image,
        }
    }
}

/// An execution's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionInput {
    pub manifest: Vec<ManifestItem>,
}

/// One image's result in the puller's `images`: `omx-pull-image`'s answer, or what the catch
/// path (no target or digest) or the CodeBuild fallback wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullResult {
    pub image: String,
    #[serde(deserialize_with = "status_or_failed")]
    pub status: ImageStatus,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub digest: Option<Digest>,
    #[serde(default)]
    pub message: String,
}

/// One build's result in the builder's `builds`: `omx-build-prepare`'s answer, or what the
/// catch and CodeBuild paths wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildResult {
    pub source_uri: String,
    pub target_image: String,
    #[serde(default)]
    pub target: Option<String>,
    /// The bundle's source digest (a string, as CodeBuild environment overrides need one).
    #[serde(default)]
    pub source_digest: Option<String>,
    #[serde(deserialize_with = "status_or_failed")]
    pub status: ImageStatus,
    #[serde(default)]
    pub message: String,
}

/// A status this version does not know counts as FAILED: the report must not call it done.
fn status_or_failed<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ImageStatus, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).unwrap_or(ImageStatus::Failed))
}

/// One item's result, of either state machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ItemResult {
    Pull(PullResult),
    Build(BuildResult),
}

impl ItemResult {
    /// The item's line of a run report, keyed by what the manifest entry said.
    pub fn report(&self) -> ImageReport {
        let (input, source, target, digest, status, message) = match self {
            ItemResult::Pull(r) => (
                &r.image,
                &r.image,
                &r.target,
                r.digest.clone(),
                r.status,
                &r.message,
            ),
            ItemResult::Build(r) => (
                &r.target_image,
                &r.source_uri,
                &r.target,
                None,
                r.status,
                &r.message,
            ),
        };
        ImageReport {
            input: input.clone(),
            source: source.clone(),
            target: target.clone().unwrap_or_default(),
            digest,
            status,
            message: message.clone(),
            bytes_copied: None,
        }
    }
}

/// An execution's output, or its "Check Results" state's: every item's result.
#[derive(Deserialize)]
struct Results {
    #[serde(rename = "images", alias = "builds")]
    items: Vec<serde_json::Value>,
}

/// The item results in `json`, an execution's output or its "Check Results" state's. An item
/// that is neither kind of result is left out: its entry is then one no result speaks for.
pub fn results_in_output(json: &str) -> Option<Vec<ItemResult>> {
    let results: Results = serde_json::from_str(json).ok()?;
    Some(
        results
            .items
            .into_iter()
            .filter_map(|item| serde_json::from_value(item).ok())
            .collect(),
    )
}

/// The failed items a failed execution's cause lists (`"K of N image(s) failed: [...]"`).
pub fn failed_items_in_cause(cause: &str) -> Option<Vec<ItemResult>> {
    let (_, list) = cause.split_once(": ")?;
    serde_json::from_str(list).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn results_of_both_machines_read_back_with_what_each_path_leaves_out() {
        // As the catch path of the puller writes it: no target, no digest.
        let output = json!({"images": [
            {"image": "a:1", "status": "FAILED", "message": "omx-pull-image failed: x: y"},
            {"image": "b:1", "status": "SUCCEEDED", "target": "r/b:1", "digest": format!("sha256:{}", "a".repeat(64)),
             "message": "copied", "too_large": false},
            {"image": "c:1", "status": "SOMETHING_NEW", "message": "?"},
            {"neither": "kind"}
        ], "total": 4});
        let items = results_in_output(&output.to_string()).unwrap();
        let reports: Vec<ImageReport> = items.iter().map(ItemResult::report).collect();
        assert_eq!(reports.len(), 3, "the item of neither kind is left out");
        assert_eq!(reports[0].status, ImageStatus::Failed);
        assert_eq!(reports[0].target, "");
        assert_eq!(reports[1].target, "r/b:1");
        assert!(reports[1].digest.is_some());
        assert_eq!(reports[2].status, ImageStatus::Failed);

        let output = json!({"builds": [{"source_uri": "s3://b/x/", "target_image": "x:1",
            "target": "r/x:1", "source_digest": "sha256:1", "status": "SKIPPED", "message": "up to date",
            "skip": true}], "total": 1});
        let items = results_in_output(&output.to_string()).unwrap();
        let report = items[0].report();
        assert_eq!(
            (report.input.as_str(), report.source.as_str()),
            ("x:1", "s3://b/x/")
        );
        assert_eq!(report.status, ImageStatus::Skipped);
    }

    #[test]
    fn the_cause_of_a_failed_execution_lists_its_failed_items() {
        let cause = format!(
            "1 of 3 image(s) failed: {}",
            json!([{"image": "b:1", "status": "FAILED", "message": "does not exist"}])
        );
        let items = failed_items_in_cause(&cause).unwrap();
        assert_eq!(items[0].report().input, "b:1");
        assert!(failed_items_in_cause("no list here").is_none());
    }

    #[test]
    fn manifest_items_are_references_or_builds() {
        let input: ExecutionInput = serde_json::from_value(json!({"manifest": [
            "ubuntu:20.04", {"source_uri": "s3://b/x.zip", "target_image": "x:omics"}]}))
        .unwrap();
        let inputs: Vec<&str> = input.manifest.iter().map(ManifestItem::input).collect();
        assert_eq!(inputs, ["ubuntu:20.04", "x:omics"]);
        assert_eq!(
            serde_json::to_value(&input).unwrap(),
            json!({"manifest": ["ubuntu:20.04", {"source_uri": "s3://b/x.zip", "target_image": "x:omics"}]})
        );
    }
}
