//! State stores: RocksDB databases, one per (group, store, partition), sharing one memory budget;
//! a write-back cache in front of each; and the changelog that makes them survive crashes.
//!
//! Uses the log only to write and replay changelogs. The runtime decides when to checkpoint and
//! what input offset a checkpoint records; see `docs/semantics.md`.

mod changelog;
mod env;
mod error;
mod handle;
mod store;
mod unfinished;

pub(crate) use changelog::LocalChangelog;
pub use changelog::{Changelog, PartitionRead};
pub use env::DEFAULT_MEMORY_BUDGET;
pub use error::{StateError, StateResult};
pub use handle::State;
pub(crate) use handle::StateFailure;
pub use store::{reset_record, RestoreCallback, RestoreProgress, RestoreReport};

pub(crate) use env::StateEnv;
#[cfg(test)]
pub(crate) use store::test_store;
pub(crate) use store::Store;
pub(crate) use store::LOCAL_ONLY;
