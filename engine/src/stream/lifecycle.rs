//! What the runtime calls on the steps of a task's dataframes, over a task's life: start
//! (check the store's operator names, run the inputs' start hooks), tick (wall-clock work),
//! flush (in-memory state into the store before a checkpoint) and close (forget the partition's
//! in-memory state: the task was handed over, given up or stopped). The runtime holds no
//! borrow of the registry's internals between these calls.
//!
//! Invariant: an operator's in-memory state of a partition is tied to the store it was loaded
//! from (by epoch), so a task that starts again reloads it; `close` frees it sooner.

use super::registry::{Ctx, Registry};
use super::{check_operator_names, StepError, StreamError};
use crate::log::Isolation;
use crate::state::Store;

/// The input of a task as its start sees it: topic and the offset it resumes from.
pub(crate) struct StartingInput<'a> {
    pub topic: &'a str,
    pub position: u64,
}

impl Registry {
    /// Whether tasks of `topic` keep state, and its partition count (`None`: not an input).
    pub fn task_shape(&self, topic: &str) -> Option<(bool, u32)> {
        let sources = self.sources.borrow();
        let source = sources.get(topic)?;
        Some((source.shared.stateful.get(), source.topic.partitions))
    }

    /// Starts the task of partition `partition` of primary `topic` over `store`: checks the
    /// names of the operators' state, runs each input's start hook; returns each input's
    /// local-only position key (a table that is its own changelog), in the inputs' order.
    pub fn start_task(
        &self,
        topic: &str,
        partition: u32,
        store: &mut Store,
        inputs: &[StartingInput<'_>],
        isolation: Isolation,
    ) -> Result<Vec<Option<Vec<u8>>>, StreamError> {
        let mut sources = self.sources.borrow_mut();
        if let Some(source) = sources.get(topic) {
            let names = source.shared.operator_names.borrow();
            check_operator_names(store, &names).map_err(|e| {
                StreamError::Setup(format!("topic {topic} partition {partition}: {e}"))
            })?;
        }
        let mut mirrors = Vec::with_capacity(inputs.len());
        for input in inputs {
            let Some(source) = sources.get_mut(input.topic) else {
                mirrors.push(None);
                continue;
            };
            mirrors.push(source.position_mirror.clone());
            if let Some(hook) = source.on_start.as_mut() {
                hook(store, partition, input.position, isolation)?;
            }
        }
        Ok(mirrors)
    }

    /// Lets the operators of `topic`'s dataframe do their wall-clock work for one task (idle
    /// window closing); what they emit goes to the outputs, in the task's name.
    pub fn tick_task(
        &self,
        topic: &str,
        partition: u32,
        position: u64,
        store: Option<&mut Store>,
    ) -> Result<(), StepError> {
        let sources = self.sources.borrow();
        let Some(source) = sources.get(topic) else {
            return Ok(());
        };
        let operators = source.shared.operators.borrow();
        if operators.is_empty() {
            return Ok(());
        }
        let mut outputs = self.outputs.borrow_mut();
        outputs.set_task(Some(&(topic.to_owned(), partition)));
        let mut ctx = Ctx {
            topic,
            partition,
            offset: position,
            raw_key: &[],
            store,
            outputs: &mut outputs,
            late_records: 0,
        };
        let mut result = Ok(());
        for op in operators.iter() {
            result = op.borrow_mut().tick(&mut ctx);
            if result.is_err() {
                break;
            }
        }
        outputs.set_task(None);
        result
    }

    /// Writes the in-memory changes of one task's operators into its store (before the
    /// store's checkpoint).
    pub fn flush_task(
        &self,
        topic: &str,
        partition: u32,
        store: &mut Store,
    ) -> Result<(), StepError> {
        let sources = self.sources.borrow();
        let Some(source) = sources.get(topic) else {
            return Ok(());
        };
        for op in source.shared.operators.borrow().iter() {
            op.borrow_mut().flush(partition, store)?;
        }
        Ok(())
    }

    /// Forgets the in-memory state of a closed task: its operators' and its inputs' (a
    /// table's decoded rows).
    pub fn close_task(&self, inputs: &[&str], partition: u32) {
        let sources = self.sources.borrow();
        for topic in inputs {
            let Some(source) = sources.get(*topic) else {
                continue;
            };
            for op in source.shared.operators.borrow().iter() {
                op.borrow_mut().close(partition);
            }
            if let Some(on_close) = &source.on_close {
                on_close(partition);
            }
        }
    }
}
