//! Windows on a dataframe: time windows (tumbling, hopping, sliding, session) with a grace period,
//! count windows
//! (tumbling, hopping by number of records), aggregations
//! ([`aggregate`]), final or current emission, closing by key or by partition ([`Closing`]),
//! late-record handling and idle closing. Semantics,
//! with a diagram of boundaries and closing, are in `docs/semantics.md`.

pub mod aggregate;
mod count;
mod key_state;
mod operator;
mod partition;
mod shapes;
pub(crate) mod state;

pub(crate) use state::check_operator_names;

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use self::aggregate::{Aggregator, By, Collect, Count, First, Last, Max, Mean, Min, Reduce, Sum};
use self::count::CountOperator;
use self::operator::{LateHandler, Plan, WindowOperator};
use self::partition::ValueCodec;
use self::shapes::{Shape, TimeWindows};
use super::dataframe::encode_record;
use super::{Format, Message, Stream, StreamTopic};

/// When window results are emitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emit {
    /// Once per window, when it closes (stream time reaches its end + grace).
    Final,
    /// After every record that updates the window.
    Current,
}

/// Whose stream time closes a time window and makes a record late.
///
/// Quix Streams' `closing_strategy`. Count windows close with their last record and ignore it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Closing {
    /// By its key's own stream time, the largest timestamp of that key's records: one key's
    /// records never close another key's windows, so each key's results are the same whichever
    /// keys share its partition. A key's last windows close with its next record, or with
    /// [`WindowSpec::close_after_idle`] after that key was quiet. Quix Streams' default.
    #[default]
    Key,
    /// By the partition's stream time, the largest timestamp of any record in the partition, as
    /// Kafka Streams closes windows: a key's windows close when any key's record passes their
    /// end + grace.
    Partition,
}

impl Closing {
    /// `"key"` or `"partition"`, as Quix Streams spells them.
    pub fn as_str(self) -> &'static str {
        match self {
            Closing::Key => "key",
            Closing::Partition => "partition",
        }
    }
}

impl std::fmt::Display for Closing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Closing {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "key" => Ok(Closing::Key),
            "partition" => Ok(Closing::Partition),
            other => Err(format!(
                "closing strategy {other:?}: expected \"key\" or \"partition\""
            )),
        }
    }
}

/// One window's result: its bounds `[start, end)` in ms and its aggregated value. The message
/// carrying it has the window's key and the timestamp `end - 1`, the last instant inside it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowResult<T> {
    /// First millisecond of the window.
    pub start: i64,
    /// First millisecond after the window.
    pub end: i64,
    /// The aggregated value.
    pub value: T,
}

/// `T`'s type name without module paths or type arguments: `(Count, Min)` for
/// `(eddy::…::Count, eddy::…::Min<fn…>)`, `Reduce` for `Reduce<{{closure}}, {{closure}}>`.
fn short_type_name<T: ?Sized>() -> String {
    let full = std::any::type_name::<T>();
    let mut out = String::new();
    let mut depth = 0usize;
    let mut word = String::new();
    let mut previous = ' ';
    for c in full.chars() {
        let arrow = previous == '-';
        previous = c;
        match c {
            '<' => depth += 1,
            '>' if arrow => {} // `->` of a function type
            '>' => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            ':' => word.clear(),
            c if c.is_alphanumeric() || c == '_' => word.push(c),
            c => {
                out.push_str(&word);
                word.clear();
                out.push(c);
            }
        }
    }
    out.push_str(&word);
    out
}

fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

enum Kind<V> {
    Time(TimeWindows, Option<ValueCodec<V>>),
    Count { size: u64, step: u64 },
}

/// A window definition on a stream, waiting for its aggregation.
pub struct WindowSpec<K, V> {
    stream: Stream<K, V>,
    kind: Kind<V>,
    closing: Closing,
    idle_close: Option<Duration>,
    late: Vec<LateHandler<K, V>>,
    name: Option<String>,
}

impl<K, V> Stream<K, V>
where
    K: Clone + Serialize + DeserializeOwned + 'static,
    V: Clone + 'static,
{
    /// Windows of `size`, one after the other from the epoch: `[n·size, (n+1)·size)`. Records up to
    /// `grace` late (in stream time) still count.
    pub fn tumbling_window(&self, size: Duration, grace: Duration) -> WindowSpec<K, V> {
        self.hopping_window(size, size, grace)
    }

    /// Windows of `size` starting every `step` from the epoch (a record falls into up to
    /// ⌈size/step⌉ of them). `step` must not exceed `size`.
    pub fn hopping_window(
        &self,
        size: Duration,
        step: Duration,
        grace: Duration,
    ) -> WindowSpec<K, V> {
        let size_ms = millis(size).max(1);
        let shape = Shape::Fixed {
            size_ms,
            step_ms: millis(step).clamp(1, size_ms),
        };
        self.time_windows(shape, grace, None)
    }

    /// For every record, the window of `size` that ends with it: `[t − size + 1, t + 1)` for a
    /// record at `t` ms, over the records of its key in that range — one result per distinct
    /// record time. Records up to `grace` late still count; the key's records of the last
    /// `size + grace` of stream time are kept in state.
    pub fn sliding_window(&self, size: Duration, grace: Duration) -> WindowSpec<K, V>
    where
        V: Serialize + DeserializeOwned,
    {
        let shape = Shape::Sliding {
            size_ms: millis(size).max(1),
        };
        self.time_windows(shape, grace, Some(ValueCodec::new()))
    }

    /// Sessions: a key's records at most `gap` apart form one window `[first, last + 1)` (Kafka
    /// Streams' inactivity gap); a session closes once stream time passes `last + gap + grace`.
    /// A record between two sessions merges them. A session keeps its records in state until it
    /// closes.
    pub fn session_window(&self, gap: Duration, grace: Duration) -> WindowSpec<K, V>
    where
        V: Serialize + DeserializeOwned,
    {
        let shape = Shape::Session {
            gap_ms: millis(gap).max(1),
        };
        self.time_windows(shape, grace, Some(ValueCodec::new()))
    }

    fn time_windows(
        &self,
        shape: Shape,
        grace: Duration,
        codec: Option<ValueCodec<V>>,
    ) -> WindowSpec<K, V> {
        let windows = TimeWindows {
            shape,
            grace_ms: millis(grace),
        };
        WindowSpec {
            stream: self.clone(),
            kind: Kind::Time(windows, codec),
            closing: Closing::default(),
            idle_close: None,
            late: Vec::new(),
            name: None,
        }
    }

    /// Windows of `size` records per key, one after the other. Closing, grace, idle closing and
    /// late records do not apply: a window is complete with its `size`-th record. A result's
    /// `start` and `end` are the smallest and largest timestamps of its records, both included
    /// (as Quix Streams reports them); its timestamp is `end`.
    pub fn tumbling_count_window(&self, size: u64) -> WindowSpec<K, V> {
        self.hopping_count_window(size, size)
    }

    /// Windows of the last `size` records per key, one ending with every record from the
    /// `size`-th on (Quix Streams' `sliding_count_window`: a hopping count window of step 1).
    pub fn sliding_count_window(&self, size: u64) -> WindowSpec<K, V> {
        self.hopping_count_window(size, 1)
    }

    /// Windows of `size` records per key, a new one starting every `step` records (`step` is at
    /// most `size`).
    pub fn hopping_count_window(&self, size: u64, step: u64) -> WindowSpec<K, V> {
        WindowSpec {
            stream: self.clone(),
            kind: Kind::Count { size, step },
            closing: Closing::default(),
            idle_close: None,
            late: Vec::new(),
            name: None,
        }
    }
}

impl<K, V> WindowSpec<K, V>
where
    K: Clone + Serialize + DeserializeOwned + 'static,
    V: Clone + 'static,
{
    /// Names the window's state. A window without a name is named after its kind, parameters and
    /// aggregation (`tumbling-10000ms-grace-1000ms:(Count, Mean)`, with `#2`, `#3` for repeats on
    /// one dataframe). Window state is stored by the window's position among the windows of its
    /// dataframe, and each store records the name behind each position: an application whose
    /// stored state was written by a window of another name refuses to start instead of reading
    /// another window's state (add new windows after the existing ones). Give a name to keep a
    /// window's state while changing its parameters.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// Whose stream time closes the windows: the key's ([`Closing::Key`], the default) or the
    /// partition's ([`Closing::Partition`]).
    pub fn closing(mut self, closing: Closing) -> Self {
        self.closing = closing;
        self
    }

    /// Also close open windows after `idle` of wall-clock time without a new record: closing by
    /// key, every window of a key that had no record for `idle`; closing by partition, every
    /// window of a partition that had none. So the last window of a quiet key or stream is
    /// emitted. Records that arrive later for those windows are late.
    pub fn close_after_idle(mut self, idle: Duration) -> Self {
        self.idle_close = Some(idle);
        self
    }

    /// Calls `f(message, window start, window end)` for every late record (after counting it).
    pub fn on_late(mut self, mut f: impl FnMut(&Message<K, V>, i64, i64) + 'static) -> Self {
        self.late.push(Box::new(move |_, m, start, end| {
            f(m, start, end);
            Ok(())
        }));
        self
    }

    /// Appends every late record to `topic`.
    pub fn late_topic<KF: Format<Value = K>, VF: Format<Value = V>>(
        mut self,
        topic: &StreamTopic<KF, VF>,
    ) -> Self {
        let id = self
            .stream
            .registry()
            .outputs
            .borrow_mut()
            .register(topic.info());
        self.late.push(Box::new(move |ctx, m, _, _| {
            let record = encode_record::<KF, VF>(m, ctx.outputs)?;
            ctx.outputs.send(id, ctx.partition, record);
            Ok(())
        }));
        self
    }

    /// Aggregates each window's records with `aggregator`.
    pub fn aggregate<G: Aggregator<V>>(self, aggregator: G) -> Windowed<K, V, G> {
        Windowed {
            spec: self,
            aggregator,
        }
    }

    /// Number of records per window.
    pub fn count(self) -> Windowed<K, V, Count> {
        self.aggregate(Count)
    }

    /// Sum of `f(value)` per window.
    pub fn sum<F: FnMut(&V) -> f64 + 'static>(self, f: F) -> Windowed<K, V, Sum<F>> {
        self.aggregate(Sum(f))
    }

    /// Mean of `f(value)` per window.
    pub fn mean<F: FnMut(&V) -> f64 + 'static>(self, f: F) -> Windowed<K, V, Mean<F>> {
        self.aggregate(Mean(f))
    }

    /// Smallest `f(value)` per window.
    pub fn min<F: FnMut(&V) -> f64 + 'static>(self, f: F) -> Windowed<K, V, Min<F>> {
        self.aggregate(Min(f))
    }

    /// Largest `f(value)` per window.
    pub fn max<F: FnMut(&V) -> f64 + 'static>(self, f: F) -> Windowed<K, V, Max<F>> {
        self.aggregate(Max(f))
    }

    /// `initializer(first value)`, then `reducer(accumulated, value)` for each further record.
    pub fn reduce<A, I, R>(self, initializer: I, reducer: R) -> Windowed<K, V, Reduce<I, R>>
    where
        A: Clone + Serialize + DeserializeOwned + 'static,
        I: FnMut(&V) -> A + 'static,
        R: FnMut(A, &V) -> A + 'static,
    {
        self.aggregate(Reduce(initializer, reducer))
    }

    /// Every value of the window, in arrival order.
    pub fn collect(self) -> Windowed<K, V, Collect>
    where
        V: Serialize + DeserializeOwned,
    {
        self.aggregate(Collect)
    }

    /// The window's first value, by event time or arrival.
    pub fn first(self, by: By) -> Windowed<K, V, First>
    where
        V: Serialize + DeserializeOwned,
    {
        self.aggregate(First(by))
    }

    /// The window's last value, by event time or arrival.
    pub fn last(self, by: By) -> Windowed<K, V, Last>
    where
        V: Serialize + DeserializeOwned,
    {
        self.aggregate(Last(by))
    }
}

/// An aggregated window definition; choose how results are emitted.
pub struct Windowed<K, V, G> {
    spec: WindowSpec<K, V>,
    aggregator: G,
}

impl<K, V, G> Windowed<K, V, G>
where
    K: Clone + Serialize + DeserializeOwned + 'static,
    V: Clone + 'static,
    G: Aggregator<V>,
{
    /// Emits each window once, when it closes.
    pub fn emit_final(self) -> Stream<K, WindowResult<G::Out>> {
        self.emit(Emit::Final)
    }

    /// Emits a window's current result after every record that updates it.
    pub fn emit_current(self) -> Stream<K, WindowResult<G::Out>> {
        self.emit(Emit::Current)
    }

    fn emit(self, mode: Emit) -> Stream<K, WindowResult<G::Out>> {
        let WindowSpec {
            stream,
            kind,
            closing,
            idle_close,
            late,
            name,
        } = self.spec;
        let aggregator = self.aggregator;
        let name = name.unwrap_or_else(|| {
            let what = match &kind {
                Kind::Time(w, _) => w.describe(),
                Kind::Count { size, step } if size == step => format!("tumbling-count-{size}"),
                Kind::Count { size, step } => format!("hopping-count-{size}-{step}"),
            };
            format!("{what}:{}", short_type_name::<G>())
        });
        match kind {
            Kind::Time(windows, codec) => stream.with_operator(
                name,
                move |id, downstream| {
                    let plan = Plan {
                        windows,
                        codec,
                        emit: mode,
                        closing,
                        idle_close,
                    };
                    WindowOperator::new(id, plan, aggregator, late, downstream)
                },
                |op, ctx, m| op.process(ctx, m),
            ),
            Kind::Count { size, step } => stream.with_operator(
                name,
                move |id, downstream| {
                    CountOperator::new(id, size, step, mode, aggregator, downstream)
                },
                |op, ctx, m| op.process(ctx, m),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn short_type_names_drop_paths_and_type_arguments() {
        use super::short_type_name;
        use crate::aggregate::{Count, Mean, Reduce};
        assert_eq!(short_type_name::<Count>(), "Count");
        assert_eq!(
            short_type_name::<(Count, Mean<fn(&u8) -> f64>)>(),
            "(Count, Mean)"
        );
        assert_eq!(
            short_type_name::<Reduce<fn(&u8) -> i64, fn(i64, &u8) -> i64>>(),
            "Reduce"
        );
    }
}
