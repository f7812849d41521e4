//! What every store of a process shares: one RocksDB block cache and one write-buffer manager sized
//! from the memory budget.
//!
//! Split of the budget: three quarters to RocksDB (the block cache, which also carries the
//! memtables through the write-buffer manager), one quarter to each store's write-back cache: dirty
//! entries above an eighth of the budget ask for an early checkpoint, clean entries above a quarter
//! are dropped. With many stores active at once, eddy's caches can therefore exceed their share;
//! RocksDB's part is shared and bounded.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{BlockBasedOptions, Cache, Options, WriteBufferManager};

use super::store::RestoreCallback;

/// The default memory budget of all stores of a process: 64 MiB.
pub const DEFAULT_MEMORY_BUDGET: usize = 64 << 20;

/// Shared resources of the stores of one process, and the budget's split. Cheap to clone.
#[derive(Clone)]
pub(crate) struct StateEnv {
    inner: Arc<EnvInner>,
}

struct EnvInner {
    dir: PathBuf,
    budget: usize,
    cache: Cache,
    write_buffers: WriteBufferManager,
    on_restore: Option<RestoreCallback>,
}

impl StateEnv {
    /// An environment for stores under `dir` within `budget` bytes (at least 4 MiB is used),
    /// reporting long restores to `on_restore`.
    pub fn new(dir: &Path, budget: usize, on_restore: Option<RestoreCallback>) -> Self {
        let budget = budget.max(4 << 20);
        let cache = Cache::new_lru_cache(budget / 4 * 3);
        let write_buffers = WriteBufferManager::new_write_buffer_manager_with_cache(
            budget / 4,
            false,
            cache.clone(),
        );
        StateEnv {
            inner: Arc::new(EnvInner {
                dir: dir.to_owned(),
                budget,
                cache,
                write_buffers,
                on_restore,
            }),
        }
    }

    /// Where long restores are reported.
    pub fn restore_callback(&self) -> Option<&RestoreCallback> {
        self.inner.on_restore.as_ref()
    }

    /// Directory of the store `(group, store, partition)`.
    pub fn store_dir(&self, group: &str, store: &str, partition: u32) -> PathBuf {
        self.inner
            .dir
            .join(group)
            .join(store)
            .join(partition.to_string())
    }

    /// RocksDB options of every store: shared cache and write buffers, no compression (eddy's
    /// default build links no compression library), few background threads.
    pub fn options(&self) -> Options {
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&self.inner.cache);
        table.set_cache_index_and_filter_blocks(true);
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_paranoid_checks(true);
        opts.set_block_based_table_factory(&table);
        opts.set_write_buffer_manager(&self.inner.write_buffers);
        opts.set_write_buffer_size((self.inner.budget / 8).max(1 << 20));
        opts.set_max_background_jobs(2);
        opts.set_compression_type(rocksdb::DBCompressionType::None);
        opts.set_keep_log_file_num(2);
        opts
    }

    /// Dirty bytes of one store above which it should be checkpointed.
    pub fn dirty_limit(&self) -> usize {
        self.inner.budget / 8
    }

    /// Clean cached bytes one store keeps before dropping them: a quarter of the budget.
    pub fn clean_limit(&self) -> usize {
        self.inner.budget / 4
    }
}
