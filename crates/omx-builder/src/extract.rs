//! Safe zip extraction.
//!
//! An archive is untrusted input. Each entry's name must stay inside the destination
//! ([`safe_relative_path`]); symbolic links are refused outright (a link, even one pointing
//! inside, lets a later entry write through it, and Docker contexts rarely need them); devices,
//! pipes and sockets are refused; and sizes are counted on the decompressed bytes as they are
//! written, per entry, in total and as a ratio to the compressed size, since zip headers can
//! lie. Files are created new (an entry given twice is an error) with mode 0644, or 0755 when the
//! archive marks them executable. The caller removes the destination when this fails.

use std::fs::{self, File};
use std::io::{BufReader, Read as _, Write as _};
use std::path::Path;

use zip::ZipArchive;

use crate::bundle::{create_bundle_file, safe_relative_path, Budget, BundleError, Limits};

const FILE_TYPE_MASK: u32 = 0o170_000;
const REGULAR_FILE: u32 = 0o100_000;
const DIRECTORY: u32 = 0o040_000;
const SYMLINK: u32 = 0o120_000;

/// Extracts `archive` into the existing folder `destination` within `limits`.
pub(crate) fn extract_zip(
    archive: &Path,
    destination: &Path,
    limits: Limits,
) -> Result<(), BundleError> {
    let archive_name = archive.display().to_string();
    let zip_error = |reason: String| BundleError::Zip {
        archive: archive_name.clone(),
        reason,
    };
    let file = File::open(archive).map_err(BundleError::io(&archive_name))?;
    let mut zip = ZipArchive::new(BufReader::new(file)).map_err(|e| zip_error(e.to_string()))?;
    if zip.len() > limits.max_entries {
        return Err(BundleError::TooManyEntries {
            limit: limits.max_entries,
        });
    }
    let mut budget = Budget::new(limits);
    let mut buffer = vec![0u8; 64 * 1024];
    for index in 0..zip.len() {
        let mut entry = zip
            .by_index(index)
            .map_err(|e| zip_error(format!("entry #{index}: {e}")))?;
        let name = entry
            .name()
            .map_err(|e| zip_error(format!("entry #{index}: {e}")))?
            .into_owned();
        let relative = safe_relative_path(&name).map_err(|reason| BundleError::UnsafePath {
            entry: name.clone(),
            reason,
        })?;
        let mode = entry.unix_mode();
        let file_type = mode.map_or(0, |mode| mode & FILE_TYPE_MASK);
        if entry.is_symlink() || file_type == SYMLINK {
            return Err(BundleError::Symlink { entry: name });
        }
        if ![0, REGULAR_FILE, DIRECTORY].contains(&file_type) {
            return Err(BundleError::UnsupportedType { entry: name });
        }
        budget.add_entry()?;
        if entry.is_dir() || file_type == DIRECTORY {
            fs::create_dir_all(destination.join(&relative))
                .map_err(BundleError::io(format!("entry {name:?}")))?;
            continue;
        }
        if relative.as_os_str().is_empty() {
            return Err(BundleError::UnsafePath {
                entry: name,
                reason: "is a file without a name",
            });
        }
        let executable = mode.is_some_and(|mode| mode & 0o111 != 0);
        let mut out = create_bundle_file(destination, &relative, executable, &name)?;
        let compressed = entry.compressed_size();
        let max_ratio = budget.limits().max_ratio;
        let ratio_floor = budget.limits().ratio_floor_bytes;
        let mut written = 0u64;
        loop {
            let count = entry
                .read(&mut buffer)
                .map_err(|e| zip_error(format!("entry {name:?}: {e}")))?;
            if count == 0 {
                break;
            }
            written += count as u64;
            budget.add_bytes(&name, written, count as u64)?;
            if written > ratio_floor && written > compressed.saturating_mul(max_ratio) {
                return Err(BundleError::CompressionRatio {
                    entry: name,
                    ratio: max_ratio,
                });
            }
            out.write_all(&buffer[..count])
                .map_err(BundleError::io(format!("entry {name:?}")))?;
        }
    }
    Ok(())
}
