//! Aggregations of a window's records: [`Aggregator`] and the built-in ones — [`Count`], [`Sum`],
//! [`Mean`], [`Min`], [`Max`], [`Reduce`], [`Collect`], [`First`], [`Last`] — and tuples of up to
//! four aggregators computed together over one window.
//!
//! An aggregator folds records into an accumulator (saved in window state, so it must serialize)
//! and turns the accumulator into the window's value when the window is emitted.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Folds the records of a window. `order` is the record's arrival order within its partition (for
/// first/last by arrival); `timestamp_ms` its event time.
pub trait Aggregator<V>: 'static {
    /// What the window state keeps between records.
    type Acc: Clone + Serialize + DeserializeOwned + 'static;
    /// The window's value.
    type Out: Clone + 'static;

    /// The accumulator after the window's first record.
    fn init(&mut self, value: &V, timestamp_ms: i64, order: u64) -> Self::Acc;

    /// Adds a record to the accumulator.
    fn add(&mut self, acc: &mut Self::Acc, value: &V, timestamp_ms: i64, order: u64);

    /// The window's value.
    fn result(&self, acc: &Self::Acc) -> Self::Out;
}

/// Number of records.
#[derive(Clone, Copy, Debug, Default)]
pub struct Count;

impl<V: 'static> Aggregator<V> for Count {
    type Acc = u64;
    type Out = u64;

    fn init(&mut self, _: &V, _: i64, _: u64) -> u64 {
        1
    }

    fn add(&mut self, acc: &mut u64, _: &V, _: i64, _: u64) {
        *acc += 1;
    }

    fn result(&self, acc: &u64) -> u64 {
        *acc
    }
}

macro_rules! numeric_aggregator {
    ($(#[$doc:meta])* $name:ident, $acc:ty, |$f:ident, $v:ident| $init:expr, |$a:ident, $x:ident| $add:expr, |$r:ident| $out:expr) => {
        $(#[$doc])*
        pub struct $name<F>(pub F);

        impl<V: 'static, F: FnMut(&V) -> f64 + 'static> Aggregator<V> for $name<F> {
            type Acc = $acc;
            type Out = f64;

            fn init(&mut self, value: &V, _: i64, _: u64) -> $acc {
                let $f = &mut self.0;
                let $v = value;
                $init
            }

            fn add(&mut self, acc: &mut $acc, value: &V, _: i64, _: u64) {
                let $x = (self.0)(value);
                let $a = acc;
                $add
            }

            fn result(&self, acc: &$acc) -> f64 {
                let $r = acc;
                $out
            }
        }
    };
}

numeric_aggregator!(
    /// Sum of `f(value)`.
    Sum, f64, |f, v| f(v), |a, x| *a += x, |r| *r
);
numeric_aggregator!(
    /// Arithmetic mean of `f(value)` (sum and count kept).
    Mean, (f64, u64), |f, v| (f(v), 1), |a, x| { a.0 += x; a.1 += 1 }, |r| r.0 / r.1 as f64
);
numeric_aggregator!(
    /// Smallest `f(value)`.
    Min, f64, |f, v| f(v), |a, x| *a = a.min(x), |r| *r
);
numeric_aggregator!(
    /// Largest `f(value)`.
    Max, f64, |f, v| f(v), |a, x| *a = a.max(x), |r| *r
);

/// A user fold: `initializer(first value)`, then `reducer(accumulated, value)` for each further
/// record (Quix Streams' `reduce`).
pub struct Reduce<I, R>(pub I, pub R);

impl<V, A, I, R> Aggregator<V> for Reduce<I, R>
where
    V: 'static,
    A: Clone + Serialize + DeserializeOwned + 'static,
    I: FnMut(&V) -> A + 'static,
    R: FnMut(A, &V) -> A + 'static,
{
    type Acc = A;
    type Out = A;

    fn init(&mut self, value: &V, _: i64, _: u64) -> A {
        (self.0)(value)
    }

    fn add(&mut self, acc: &mut A, value: &V, _: i64, _: u64) {
        let current = acc.clone();
        *acc = (self.1)(current, value);
    }

    fn result(&self, acc: &A) -> A {
        acc.clone()
    }
}

/// Every value, in arrival order.
#[derive(Clone, Copy, Debug, Default)]
pub struct Collect;

impl<V: Clone + Serialize + DeserializeOwned + 'static> Aggregator<V> for Collect {
    type Acc = Vec<V>;
    type Out = Vec<V>;

    fn init(&mut self, value: &V, _: i64, _: u64) -> Vec<V> {
        vec![value.clone()]
    }

    fn add(&mut self, acc: &mut Vec<V>, value: &V, _: i64, _: u64) {
        acc.push(value.clone());
    }

    fn result(&self, acc: &Vec<V>) -> Vec<V> {
        acc.clone()
    }
}

/// Which record counts as first or last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum By {
    /// Smallest (first) or largest (last) event time; ties go to the earlier arrival for first and
    /// the later arrival for last.
    EventTime,
    /// Arrival order in the partition.
    Arrival,
}

/// The window's first value, by event time or by arrival.
#[derive(Clone, Copy, Debug)]
pub struct First(pub By);

/// The window's last value, by event time or by arrival.
#[derive(Clone, Copy, Debug)]
pub struct Last(pub By);

/// Accumulator of [`First`] and [`Last`]: the chosen value with its event time and arrival.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Chosen<V> {
    timestamp_ms: i64,
    order: u64,
    value: V,
}

fn choose<V: Clone>(acc: &mut Chosen<V>, value: &V, ts: i64, order: u64, by: By, last: bool) {
    let replace = match (by, last) {
        (By::Arrival, false) => order < acc.order,
        (By::Arrival, true) => order >= acc.order,
        (By::EventTime, false) => ts < acc.timestamp_ms,
        (By::EventTime, true) => ts >= acc.timestamp_ms,
    };
    if replace {
        *acc = Chosen {
            timestamp_ms: ts,
            order,
            value: value.clone(),
        };
    }
}

macro_rules! chosen_aggregator {
    ($name:ident, $last:expr) => {
        impl<V: Clone + Serialize + DeserializeOwned + 'static> Aggregator<V> for $name {
            type Acc = Chosen<V>;
            type Out = V;

            fn init(&mut self, value: &V, timestamp_ms: i64, order: u64) -> Chosen<V> {
                Chosen {
                    timestamp_ms,
                    order,
                    value: value.clone(),
                }
            }

            fn add(&mut self, acc: &mut Chosen<V>, value: &V, ts: i64, order: u64) {
                choose(acc, value, ts, order, self.0, $last);
            }

            fn result(&self, acc: &Chosen<V>) -> V {
                acc.value.clone()
            }
        }
    };
}

chosen_aggregator!(First, false);
chosen_aggregator!(Last, true);

macro_rules! tuple_aggregator {
    ($($t:ident $i:tt),+) => {
        impl<V: 'static, $($t: Aggregator<V>),+> Aggregator<V> for ($($t,)+) {
            type Acc = ($($t::Acc,)+);
            type Out = ($($t::Out,)+);

            fn init(&mut self, value: &V, ts: i64, order: u64) -> Self::Acc {
                ($(self.$i.init(value, ts, order),)+)
            }

            fn add(&mut self, acc: &mut Self::Acc, value: &V, ts: i64, order: u64) {
                $(self.$i.add(&mut acc.$i, value, ts, order);)+
            }

            fn result(&self, acc: &Self::Acc) -> Self::Out {
                ($(self.$i.result(&acc.$i),)+)
            }
        }
    };
}

tuple_aggregator!(A 0, B 1);
tuple_aggregator!(A 0, B 1, C 2);
tuple_aggregator!(A 0, B 1, C 2, D 3);

#[cfg(test)]
mod tests {
    use super::*;

    fn fold<V, A: Aggregator<V>>(mut agg: A, values: &[(V, i64)]) -> A::Out {
        let mut acc = None;
        for (order, (v, ts)) in values.iter().enumerate() {
            match &mut acc {
                None => acc = Some(agg.init(v, *ts, order as u64)),
                Some(a) => agg.add(a, v, *ts, order as u64),
            }
        }
        agg.result(&acc.unwrap())
    }

    #[test]
    fn built_ins_match_plain_folds() {
        let xs = [(3.0, 30), (1.0, 10), (4.0, 20), (1.5, 40)];
        let id = |v: &f64| *v;
        assert_eq!(fold(Count, &xs), 4);
        assert_eq!(fold(Sum(id), &xs), 9.5);
        assert_eq!(fold(Mean(id), &xs), 9.5 / 4.0);
        assert_eq!(fold(Min(id), &xs), 1.0);
        assert_eq!(fold(Max(id), &xs), 4.0);
        assert_eq!(fold(Collect, &xs), vec![3.0, 1.0, 4.0, 1.5]);
        assert_eq!(fold(First(By::Arrival), &xs), 3.0);
        assert_eq!(fold(Last(By::Arrival), &xs), 1.5);
        assert_eq!(fold(First(By::EventTime), &xs), 1.0);
        assert_eq!(fold(Last(By::EventTime), &xs), 1.5);
        let reduce = Reduce(
            |v: &f64| vec![*v],
            |mut a: Vec<f64>, v: &f64| {
                a.insert(0, *v);
                a
            },
        );
        assert_eq!(fold(reduce, &xs), vec![1.5, 4.0, 1.0, 3.0]);
        let several = fold((Count, Min(id), Max(id), Mean(id)), &xs);
        assert_eq!(several, (4, 1.0, 4.0, 2.375));
    }
}
