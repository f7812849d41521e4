//! Exactly-once checkpoints: each task's checkpoint is one transaction of its transactional
//! producer, holding the outputs its records produced, its changelog records and its input
//! offset, decided by one durable commit (see `coordinator.rs`).
//!
//! Order of a checkpoint, and what a crash between two steps leaves (the task's next start
//! completes the transaction: commits it when decided, aborts it otherwise):
//! 1. outputs appended in the task's transaction (also between checkpoints, as buffers fill);
//! 2. changelog records and the store's input-offset marker appended in it;
//! 3. the decision: the transaction commits with the input offset (group offsets), markers
//!    follow;
//! 4. the store's RocksDB saves the changes (after a crash before this, the store catches up
//!    from the committed changelog when it opens).
//!
//! Before step 3 nothing of the checkpoint is visible to committed readers and the next start
//! resumes from the previous checkpoint's offset and state; after it all of it is.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::app::{step_failure, Application, Runner};
use super::config::ProcessingGuarantee;
use super::metrics::bump;
use super::task::CHECKPOINT_METADATA;
use crate::coordinator::{abort_expired_transactions, TransactionOffsets};

/// How often an application under exactly-once looks for expired transactions.
const EXPIRY_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
use crate::stream::StreamResult;

impl Application {
    pub(super) fn exactly_once(&self) -> bool {
        self.config.processing_guarantee == ProcessingGuarantee::ExactlyOnce
    }
}

impl Runner<'_> {
    /// Appends buffered outputs: under exactly-once each task's inside its transaction.
    pub(super) fn flush_outputs(&mut self) -> StreamResult<()> {
        let registry = self.app.registry.clone();
        let mut outputs = registry.outputs.borrow_mut();
        outputs.flush()?;
        if !outputs.has_task_records() {
            return Ok(());
        }
        for (tp, task) in self.tasks.iter_mut() {
            let Some(producer) = task.producer.as_mut() else {
                continue;
            };
            for (topic, partition, records) in outputs.take_task(tp) {
                producer.append(&topic, partition, &records)?;
                outputs.sent += records.len() as u64;
            }
        }
        Ok(())
    }

    /// A checkpoint under exactly-once (module docs).
    pub(super) fn checkpoint_transactions(&mut self) -> StreamResult<()> {
        let number = self.app.metrics.checkpoints.load(Ordering::Relaxed) + 1;
        self.flush_outputs()?;
        self.app.crash_point.reached("outputs", number);
        let mut logged = Vec::new();
        for (tp, task) in self.tasks.iter_mut() {
            task.record_positions();
            let position = task.position();
            let (Some(store), Some(producer)) = (task.store.as_mut(), task.producer.as_mut())
            else {
                continue;
            };
            (self.app.registry)
                .flush_task(&tp.0, tp.1, store)
                .map_err(|e| step_failure(tp, e))?;
            if store.has_changes(position) {
                let (changelog, partition) = store.changelog_partition();
                producer.include(&changelog, partition)?;
                logged.push((tp.clone(), store.log_changes(position)?));
            }
        }
        self.app.crash_point.reached("changelog", number);
        for ((_, partition), task) in self.tasks.iter_mut() {
            let moved = task.moved(*partition);
            let Some(producer) = task.producer.as_mut() else {
                continue;
            };
            if !producer.has_open() && moved.is_empty() {
                continue;
            }
            producer.commit(Some(TransactionOffsets {
                group: self.app.config.group.clone(),
                offsets: moved,
                metadata: CHECKPOINT_METADATA.to_owned(),
            }))?;
            task.mark_committed();
        }
        self.app.crash_point.reached("commit", number);
        for (tp, changes) in logged {
            if let Some(store) = self.tasks.get_mut(&tp).and_then(|t| t.store.as_mut()) {
                store.save_changes(changes)?;
            }
        }
        self.app.crash_point.reached("store", number);
        if self.last_expiry_check.elapsed() >= EXPIRY_CHECK_EVERY {
            // A dead producer's open transaction must not hold committed readers back for
            // ever, also when no producer starts again.
            let aborted = abort_expired_transactions(self.app.log())?;
            if aborted > 0 {
                tracing::warn!(aborted, "aborted transactions open past their timeout");
            }
            self.last_expiry_check = Instant::now();
        }
        bump(&self.app.metrics.checkpoints, 1);
        self.last_checkpoint = Instant::now();
        self.since_checkpoint = 0;
        Ok(())
    }
}
