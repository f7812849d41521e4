//! The inputs of a task: one partition of each topic its dataframes read (the primary topic
//! first), with the position of each, and — for tasks with more than one input — the records
//! polled and not yet processed, merged into one stream in timestamp order.
//!
//! Invariants:
//! - `position` is the next offset of the input to process; everything before it was processed
//!   (or skipped by the error policy), nothing after it.
//! - Merging picks, among the inputs' first buffered records, the one with the smallest log
//!   timestamp; ties go to the secondary inputs first (a table row or a right-side record with
//!   the left record's timestamp is there when the left record looks it up), then in input
//!   order. While an input has nothing buffered but records in the log, the others wait for the
//!   next poll to bring them, so that the order does not depend on how polls happened to cut
//!   the inputs; an input with nothing in the log is not waited for, unless `max_task_idle`
//!   says how long to wait for it, as Kafka Streams' `max.task.idle.ms`.
//! - A stateful task's store records each secondary input's position (entry `b'i', topic`), in
//!   the same checkpoint as the state those records changed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::log::{Fetch, RecordView};

/// First byte of the store entries holding secondary inputs' positions.
const INPUT_POSITION: u8 = b'i';

/// The store key of the position of secondary input `topic`.
pub(crate) fn position_key(topic: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + topic.len());
    k.push(INPUT_POSITION);
    k.extend_from_slice(topic.as_bytes());
    k
}

/// One input of a task.
pub(crate) struct Input {
    pub topic: String,
    /// Next offset to process.
    pub position: u64,
    /// Offset last committed for this input by this instance (or found at start).
    pub committed: Option<u64>,
    /// Position last written into the store (secondary inputs of stateful tasks).
    pub recorded: Option<u64>,
    /// A local-only store key that gets the position too (a table that is its own changelog
    /// records there how far its rows go).
    pub mirror_key: Option<Vec<u8>>,
    /// Polled records not processed yet, and the index of the next one in the first fetch.
    buffered: VecDeque<Fetch>,
    next: usize,
    /// Since when nothing was buffered, to bound the wait for a silent input.
    empty_since: Option<Instant>,
}

impl Input {
    pub fn new(topic: String, position: u64, committed: Option<u64>) -> Self {
        Input {
            topic,
            position,
            committed,
            recorded: None,
            mirror_key: None,
            buffered: VecDeque::new(),
            next: 0,
            empty_since: Some(Instant::now()),
        }
    }

    /// Keeps polled records for merging.
    pub fn buffer(&mut self, fetch: Fetch) {
        if !fetch.is_empty() {
            self.buffered.push_back(fetch);
            self.empty_since = None;
        }
    }

    /// The next buffered record.
    pub fn head(&self) -> Option<RecordView<'_>> {
        self.buffered.front().and_then(|f| f.get(self.next))
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.buffered.is_empty()
    }

    /// Moves past the head record (processed), to `offset + 1`.
    pub fn advance(&mut self, offset: u64) {
        self.position = offset + 1;
        self.next += 1;
        let done = self.buffered.front().is_some_and(|f| self.next >= f.len());
        if done {
            if let Some(f) = self.buffered.pop_front() {
                // Records the read skipped at its end (aborted ones, control batches) count as
                // read.
                self.position = self.position.max(f.next_offset());
            }
            self.next = 0;
            if self.buffered.is_empty() {
                self.empty_since = Some(Instant::now());
            }
        }
    }

    /// Whether a merge waits for this empty input: it has records in the log not polled yet
    /// (`readable`), or has been silent for less than `max_idle`.
    pub fn holds_back(&self, readable: bool, max_idle: Duration) -> bool {
        readable
            || (!max_idle.is_zero() && self.empty_since.is_some_and(|t| t.elapsed() < max_idle))
    }
}

/// Which input's head record a merge processes next: the smallest timestamp, ties to secondary
/// inputs (index ≥ 1) in order, then the primary. `None` when nothing is buffered.
pub(crate) fn next_input(inputs: &[Input]) -> Option<usize> {
    let order = (1..inputs.len()).chain(std::iter::once(0));
    let mut best: Option<(usize, i64)> = None;
    for i in order {
        if let Some(r) = inputs.get(i).and_then(Input::head) {
            if best.is_none_or(|(_, ts)| r.timestamp < ts) {
                best = Some((i, r.timestamp));
            }
        }
    }
    best.map(|(i, _)| i)
}
