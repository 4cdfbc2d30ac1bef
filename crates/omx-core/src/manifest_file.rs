//! The two input files users already know from the original tool.
//!
//! - pull: `{"manifest": ["ubuntu:20.04", "quay.io/biocontainers/bcftools:1.16--hfe4b78e_1"]}`
//! - build: `{"manifest": [{"source_uri": "s3://bucket/dir/", "target_image": "foo:omics"}]}`
//!
//! Reading is strict and complete: unknown keys are errors, and every bad entry is reported with its
//! index at once, so a user fixes a file in one pass instead of one error per run.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::excerpt::excerpt;
use crate::secret::redact;

/// Largest manifest file read, so a wrong path (a disk image, a log) fails fast with a clear message.
pub const MAX_MANIFEST_BYTES: usize = 16 * 1024 * 1024;

/// The whole file could not be used (exit code 2 territory).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestFileError {
    #[error("the manifest is {size} bytes; the limit is {MAX_MANIFEST_BYTES}")]
    TooLarge { size: usize },
    #[error("the manifest is not valid JSON: line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("the manifest must be a JSON object with a \"manifest\" array: {0}")]
    Shape(String),
}

/// One entry that is unusable, with where it is and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryError {
    /// Position in the `manifest` array.
    pub index: usize,
    /// The entry as written (JSON text for entries that are not strings).
    pub input: String,
    pub error: String,
}

impl EntryError {
    /// An error about the entry at `index`, which the user wrote as `input` (kept whole only
    /// when it is of a plausible length: see [`excerpt`]; credentials in it [`redact`]ed, since
    /// reports are shared).
    pub fn new(index: usize, input: &str, error: impl Into<String>) -> EntryError {
        EntryError {
            index,
            input: shown_input(input),
            error: error.into(),
        }
    }
}

/// An entry as reports show it: whole only when it is of a plausible length (see [`excerpt`]),
/// credentials in it [`redact`]ed, since reports are shared.
pub fn shown_input(input: &str) -> String {
    excerpt(&redact(input)).into_owned()
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "manifest[{}] {:?}: {}",
            self.index, self.input, self.error
        )
    }
}

/// An entry of a pull manifest: the reference as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullEntry {
    pub index: usize,
    pub input: String,
}

/// An entry of a build manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildEntry {
    pub index: usize,
    pub source_uri: String,
    pub target_image: String,
}

/// A file's usable entries and the errors of the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entries<T> {
    pub entries: Vec<T>,
    pub errors: Vec<EntryError>,
}

/// Reads a pull manifest. Entries must be non-empty strings; what they mean is decided by the plan.
pub fn parse_pull_manifest(text: &str) -> Result<Entries<PullEntry>, ManifestFileError> {
    let items = manifest_array(text)?;
    let mut out = Entries {
        entries: Vec::new(),
        errors: Vec::new(),
    };
    for (index, item) in items.into_iter().enumerate() {
        match item {
            Value::String(s) if s.trim().is_empty() => {
                out.errors
                    .push(EntryError::new(index, &s, "empty image reference"))
            }
            Value::String(input) => out.entries.push(PullEntry { index, input }),
            other => out.errors.push(EntryError::new(
                index,
                &other.to_string(),
                format!(
                    "expected an image reference string, found {}",
                    json_kind(&other)
                ),
            )),
        }
    }
    Ok(out)
}

/// Reads a build manifest. Entries must be objects with exactly `source_uri` and `target_image`.
pub fn parse_build_manifest(text: &str) -> Result<Entries<BuildEntry>, ManifestFileError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Raw {
        source_uri: String,
        target_image: String,
    }

    let items = manifest_array(text)?;
    let mut out = Entries {
        entries: Vec::new(),
        errors: Vec::new(),
    };
    for (index, item) in items.into_iter().enumerate() {
        let input = item.to_string();
        // serde would also read a struct from a two-element array; an entry must be an object.
        let parsed = match item {
            Value::Object(_) => serde_json::from_value::<Raw>(item).map_err(|e| e.to_string()),
            other => Err(format!("found {}", json_kind(&other))),
        };
        match parsed {
            Ok(raw) => match build_entry(index, &input, &raw.source_uri, &raw.target_image) {
                Ok(entry) => out.entries.push(entry),
                Err(error) => out.errors.push(error),
            },
            Err(e) => out.errors.push(EntryError::new(
                index,
                &input,
                format!("expected {{\"source_uri\": \"...\", \"target_image\": \"...\"}}: {e}"),
            )),
        }
    }
    Ok(out)
}

/// One build given on its own (`build --source URI --target IMAGE`, one item of the serverless
/// builder's manifest), checked as a manifest's entry is.
pub fn single_build(source_uri: &str, target_image: &str) -> Entries<BuildEntry> {
    let input = serde_json::json!({"source_uri": source_uri, "target_image": target_image});
    let (entries, errors) = match build_entry(0, &input.to_string(), source_uri, target_image) {
        Ok(entry) => (vec![entry], Vec::new()),
        Err(error) => (Vec::new(), vec![error]),
    };
    Entries { entries, errors }
}

/// A build entry with both members set (trimmed), else the error naming the blank one.
fn build_entry(
    index: usize,
    input: &str,
    source_uri: &str,
    target_image: &str,
) -> Result<BuildEntry, EntryError> {
    let blank = [("source_uri", source_uri), ("target_image", target_image)]
        .into_iter()
        .find(|(_, value)| value.trim().is_empty());
    match blank {
        Some((key, _)) => Err(EntryError::new(index, input, format!("{key} is empty"))),
        None => Ok(BuildEntry {
            index,
            source_uri: source_uri.trim().to_string(),
            target_image: target_image.trim().to_string(),
        }),
    }
}

fn manifest_array(text: &str) -> Result<Vec<Value>, ManifestFileError> {
    if text.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestFileError::TooLarge { size: text.len() });
    }
    let value: Value = serde_json::from_str(text).map_err(|e| ManifestFileError::Syntax {
        line: e.line(),
        column: e.column(),
        message: strip_position(&e.to_string()),
    })?;
    let Value::Object(mut object) = value else {
        return Err(ManifestFileError::Shape(format!(
            "found {}",
            json_kind(&value)
        )));
    };
    if let Some(unknown) = object.keys().find(|key| *key != "manifest") {
        return Err(ManifestFileError::Shape(format!(
            "unknown key {unknown:?} (the only key is \"manifest\")"
        )));
    }
    match object.remove("manifest") {
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(ManifestFileError::Shape(format!(
            "\"manifest\" is {}, not an array",
            json_kind(&other)
        ))),
        None => Err(ManifestFileError::Shape(
            "the \"manifest\" key is missing".to_string(),
        )),
    }
}

/// serde_json appends " at line L column C", which our message states on its own.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_pull_manifest() {
        let parsed =
            parse_pull_manifest(r#"{"manifest": ["ubuntu:20.04", " quay.io/x/y:1 "]}"#).unwrap();
        assert_eq!(parsed.errors, vec![]);
        assert_eq!(
            parsed.entries,
            vec![
                PullEntry {
                    index: 0,
                    input: "ubuntu:20.04".into()
                },
                PullEntry {
                    index: 1,
                    input: " quay.io/x/y:1 ".into()
                },
            ]
        );
    }

    #[test]
    fn reports_every_bad_entry_with_its_index() {
        let parsed = parse_pull_manifest(r#"{"manifest": ["ok:1", 3, "", null, ["x"]]}"#).unwrap();
        assert_eq!(parsed.entries.len(), 1);
        let described: Vec<_> = parsed
            .errors
            .iter()
            .map(|e| (e.index, e.error.as_str()))
            .collect();
        assert_eq!(
            described,
            vec![
                (1, "expected an image reference string, found a number"),
                (2, "empty image reference"),
                (3, "expected an image reference string, found null"),
                (4, "expected an image reference string, found an array"),
            ]
        );
    }

    #[test]
    fn syntax_errors_give_line_and_column() {
        let err = parse_pull_manifest("{\n  \"manifest\": [\"a\",]\n}").unwrap_err();
        match err {
            ManifestFileError::Syntax { line, column, .. } => assert_eq!((line, column), (2, 20)),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn shape_errors() {
        let cases = [
            ("[]", "found an array"),
            (
                r#"{"manifest": "ubuntu"}"#,
                "\"manifest\" is a string, not an array",
            ),
            (r#"{}"#, "the \"manifest\" key is missing"),
            (
                r#"{"manifest": [], "images": []}"#,
                "unknown key \"images\"",
            ),
        ];
        for (text, expected) in cases {
            let err = parse_pull_manifest(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn oversized_files_are_refused_before_parsing() {
        let text = " ".repeat(MAX_MANIFEST_BYTES + 1);
        assert!(matches!(
            parse_pull_manifest(&text),
            Err(ManifestFileError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_single_build_is_checked_as_a_manifest_entry_is() {
        let single = single_build(" s3://b/x.zip ", "x:omics");
        assert_eq!(
            single.entries,
            vec![BuildEntry {
                index: 0,
                source_uri: "s3://b/x.zip".into(),
                target_image: "x:omics".into()
            }]
        );
        let manifest = parse_build_manifest(
            r#"{"manifest": [{"source_uri": "s3://b/x.zip", "target_image": " "}]}"#,
        )
        .unwrap();
        let single = single_build("s3://b/x.zip", " ");
        assert!(single.entries.is_empty());
        assert_eq!(single.errors[0].error, manifest.errors[0].error);
        assert_eq!(single.errors[0].error, "target_image is empty");
    }

    #[test]
    fn reads_a_build_manifest() {
        let parsed = parse_build_manifest(
            r#"{"manifest": [
                {"source_uri": "s3://bucket/dir/", "target_image": "foo:omics"},
                {"source_uri": "s3://b/x.zip", "target_image": "bar:1", "extra": true},
                {"source_uri": "s3://b/y.zip"},
                {"source_uri": " ", "target_image": "baz:1"},
                "s3://b/z.zip"
            ]}"#,
        )
        .unwrap();
        assert_eq!(
            parsed.entries,
            vec![BuildEntry {
                index: 0,
                source_uri: "s3://bucket/dir/".into(),
                target_image: "foo:omics".into()
            }]
        );
        let errors: Vec<_> = parsed
            .errors
            .iter()
            .map(|e| (e.index, e.error.clone()))
            .collect();
        assert!(errors[0].1.contains("unknown field `extra`"), "{errors:?}");
        assert!(
            errors[1].1.contains("missing field `target_image`"),
            "{errors:?}"
        );
        assert_eq!(errors[2], (3, "source_uri is empty".to_string()));
        assert!(errors[3].1.contains("expected"), "{errors:?}");
        assert_eq!(errors.len(), 4);
    }
}
