//! `--no-blob-cache` and `--blob-cache-dir`, for the commands that copy (`pull`, `prepare`,
//! `copy`): where the target registry held each blob in earlier runs, so a resumed or later run
//! mounts a shared layer from another repository instead of sending it again.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use omx_registry::{BlobCache, CopyEngine};

#[derive(Args, Debug, Clone)]
pub struct BlobCacheArgs {
    /// Do not read or write the blob-location cache: which repositories of a target registry
    /// held which blob in earlier runs, tried as mount sources before a blob is sent again.
    #[arg(long)]
    pub no_blob_cache: bool,

    /// Keep the blob-location cache in DIR (default: $XDG_CACHE_HOME/omx-ecr-helper/blob-locations,
    /// else ~/.cache/omx-ecr-helper/blob-locations). It holds registry hosts, repository names and
    /// digests, never credentials.
    #[arg(long, value_name = "DIR", conflicts_with = "no_blob_cache")]
    pub blob_cache_dir: Option<PathBuf>,
}

/// The cache of one run: none when turned off, for a dry run (which must write nothing), or
/// when there is no directory to keep it in.
pub struct RunCache {
    cache: Option<Arc<BlobCache>>,
    /// When it was last saved during the run, if it was.
    saved_at: Mutex<Option<Instant>>,
}

/// How often a run saves what it learned as its images finish, so that a run killed or
/// interrupted leaves its resume what it had learned by then (all but the last seconds of it).
const SAVE_WHILE_RUNNING_EVERY: Duration = Duration::from_secs(10);

impl RunCache {
    pub fn open(args: &BlobCacheArgs, dry_run: bool) -> RunCache {
        let dir = match args.no_blob_cache || dry_run {
            true => None,
            false => args
                .blob_cache_dir
                .clone()
                .or_else(|| crate::xdg::tool_dir("XDG_CACHE_HOME", ".cache", "blob-locations")),
        };
        RunCache {
            cache: dir.map(|dir| Arc::new(BlobCache::open(&dir))),
            saved_at: Mutex::new(None),
        }
    }

    /// `engine`, consulting and updating this cache.
    pub fn attach(&self, engine: CopyEngine) -> CopyEngine {
        match &self.cache {
            Some(cache) => engine.with_blob_cache(cache.clone()),
            None => engine,
        }
    }

    /// Saves what the run learned. A cache only saves requests, so failing to save it is said
    /// at `-v` and never fails the run.
    /// An image of the run is done: saves what the run learned if it has not saved in the last
    /// seconds (the first image done always saves).
    pub fn image_done(&self) {
        let mut saved_at = self
            .saved_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if saved_at.is_some_and(|at| at.elapsed() < SAVE_WHILE_RUNNING_EVERY) {
            return;
        }
        *saved_at = Some(Instant::now());
        drop(saved_at);
        self.save();
    }

    pub fn save(&self) {
        if let Some(cache) = &self.cache {
            if let Err(error) = cache.save() {
                tracing::debug!(
                    "blob-location cache {} not saved: {error}",
                    omx_core::excerpt::escape(&cache.file().display().to_string())
                );
            }
        }
    }
}
