//! `--no-blob-cache` and `--blob-cache-dir`, for the commands that copy (`pull`, `prepare`,
//! `copy`): where the target registry held each blob in earlier runs, so a resumed or later run
//! mounts a shared layer from another repository instead of sending it again.

use std::path::PathBuf;
use std::sync::Arc;

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

/// The cache of one run: `None` when turned off, for a dry run (which must write nothing), or
/// when there is no directory to keep it in.
pub struct RunCache(Option<Arc<BlobCache>>);

impl RunCache {
    pub fn open(args: &BlobCacheArgs, dry_run: bool) -> RunCache {
        if args.no_blob_cache || dry_run {
            return RunCache(None);
        }
        let dir = args
            .blob_cache_dir
            .clone()
            .or_else(|| crate::xdg::tool_dir("XDG_CACHE_HOME", ".cache", "blob-locations"));
        RunCache(dir.map(|dir| Arc::new(BlobCache::open(&dir))))
    }

    /// `engine`, consulting and updating this cache.
    pub fn attach(&self, engine: CopyEngine) -> CopyEngine {
        match &self.0 {
            Some(cache) => engine.with_blob_cache(cache.clone()),
            None => engine,
        }
    }

    /// Saves what the run learned. A cache only saves requests, so failing to save it is said
    /// at `-v` and never fails the run.
    pub fn save(&self) {
        if let Some(cache) = &self.0 {
            if let Err(error) = cache.save() {
                tracing::debug!(
                    "blob-location cache {} not saved: {error}",
                    omx_core::excerpt::escape(&cache.file().display().to_string())
                );
            }
        }
    }
}
