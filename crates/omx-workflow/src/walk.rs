//! Reading a workflow from disk: walking a directory for source files and loading the files
//! they refer to.

use std::collections::{HashSet, VecDeque};
use std::io;
use std::path::{Path, PathBuf};

use crate::{
    normalize, referenced_files, scan_sources, Language, Location, ScanReport, SourceFile, Warning,
    WarningKind, WdlInputs,
};

/// Directories never entered: version control, Nextflow's work directory, JavaScript
/// dependencies. Hidden directories are skipped too.
const SKIPPED_DIRECTORIES: [&str; 3] = [".git", "work", "node_modules"];

/// The extensions of the files that may be workflow sources.
const SOURCE_EXTENSIONS: [&str; 8] = ["nf", "config", "wdl", "cwl", "smk", "yml", "yaml", "json"];

/// Snakemake's workflow file, which has no extension.
const SNAKEFILE: &str = "Snakefile";

/// Larger files are not workflow sources a person wrote.
const MAX_SOURCE_BYTES: u64 = 8 * 1024 * 1024;

/// Why a path cannot be scanned at all.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("{} does not exist", path.display())]
    NotFound { path: PathBuf },
    #[error(
        "{} is not a workflow source (expected .nf, .config, .wdl, .cwl, YAML/JSON with \
         cwlVersion, or a Snakefile or .smk)",
        path.display()
    )]
    NotAWorkflow { path: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// The source files found, and the ones that could not be read.
#[derive(Debug, Default)]
pub struct Collected {
    pub sources: Vec<SourceFile>,
    pub warnings: Vec<Warning>,
}

/// The language of a file, from its extension (or the name `Snakefile`); YAML and JSON files
/// count as CWL only when they mention `cwlVersion`.
pub fn detect_language(path: &Path, text: &str) -> Option<Language> {
    if path.file_name().is_some_and(|name| name == SNAKEFILE) {
        return Some(Language::Snakemake);
    }
    match path.extension()?.to_str()? {
        "nf" => Some(Language::Nextflow),
        "config" => Some(Language::NextflowConfig),
        "wdl" => Some(Language::Wdl),
        "cwl" => Some(Language::Cwl),
        "smk" => Some(Language::Snakemake),
        "yml" | "yaml" | "json" if text.contains("cwlVersion") => Some(Language::Cwl),
        _ => None,
    }
}

/// Reads the workflow at `path` (a source file, or a directory walked for them) and every
/// file the sources refer to by relative path.
pub fn collect_sources(path: &Path) -> Result<Collected, ScanError> {
    let metadata = std::fs::metadata(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => ScanError::NotFound {
            path: path.to_path_buf(),
        },
        _ => ScanError::Io {
            path: path.to_path_buf(),
            source,
        },
    })?;
    let mut collected = Collected::default();
    if metadata.is_dir() {
        walk_directory(path, &mut collected)?;
    } else {
        let text = std::fs::read_to_string(path).map_err(|source| ScanError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let language = detect_language(path, &text).ok_or_else(|| ScanError::NotAWorkflow {
            path: path.to_path_buf(),
        })?;
        collected.sources.push(SourceFile {
            path: normalize(path),
            text,
            language,
        });
    }
    load_referenced_files(&mut collected);
    Ok(collected)
}

/// Scans the workflow at `path`; `inputs` gives values for WDL inputs.
pub fn scan_path(path: &Path, inputs: Option<&WdlInputs>) -> Result<ScanReport, ScanError> {
    let collected = collect_sources(path)?;
    let mut report = scan_sources(&collected.sources, inputs);
    report.warnings.extend(collected.warnings);
    report.sort_and_dedup();
    Ok(report)
}

fn walk_directory(directory: &Path, collected: &mut Collected) -> Result<(), ScanError> {
    let io_error = |source| ScanError::Io {
        path: directory.to_path_buf(),
        source,
    };
    let mut entries = std::fs::read_dir(directory)
        .map_err(io_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_error)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if file_type.is_dir() {
            if !name.starts_with('.') && !SKIPPED_DIRECTORIES.contains(&name.as_ref()) {
                walk_directory(&path, collected)?;
            }
            continue;
        }
        let might_be_source = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| SOURCE_EXTENSIONS.contains(&e))
            || name == SNAKEFILE;
        if !might_be_source {
            continue;
        }
        if let Some(text) = read_source(&path, collected) {
            if let Some(language) = detect_language(&path, &text) {
                collected.sources.push(SourceFile {
                    path: normalize(&path),
                    text,
                    language,
                });
            }
        }
    }
    Ok(())
}

/// A file's text, or a warning about why it cannot be had.
fn read_source(path: &Path, collected: &mut Collected) -> Option<String> {
    let mut problem = |reason: String| {
        collected.warnings.push(Warning {
            location: Location {
                file: normalize(path),
                line: 0,
            },
            kind: WarningKind::Unreadable,
            message: format!("{reason}; its images are not listed"),
        });
        None
    };
    match std::fs::metadata(path) {
        Ok(m) if m.len() > MAX_SOURCE_BYTES => problem(format!(
            "the file is {} bytes, more than the {MAX_SOURCE_BYTES} a workflow source may be",
            m.len()
        )),
        Err(error) => problem(format!("cannot read the file: {error}")),
        Ok(_) => match std::fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(error) => problem(format!("cannot read the file: {error}")),
        },
    }
}

/// Loads, transitively, the files the sources refer to that are not loaded yet. Missing
/// ones are left for the language scanners to report at the line that names them.
fn load_referenced_files(collected: &mut Collected) {
    let mut loaded: HashSet<PathBuf> = collected.sources.iter().map(|s| s.path.clone()).collect();
    let mut queue: VecDeque<usize> = (0..collected.sources.len()).collect();
    while let Some(index) = queue.pop_front() {
        for (path, language) in referenced_files(&collected.sources[index]) {
            if loaded.contains(&path) || !path.is_file() {
                continue;
            }
            loaded.insert(path.clone());
            if let Some(text) = read_source(&path, collected) {
                collected.sources.push(SourceFile {
                    path,
                    text,
                    language,
                });
                queue.push_back(collected.sources.len() - 1);
            }
        }
    }
}
