//! Joins: a dataframe enriched from a [`Table`] (the latest value per key of a topic), as of a
//! time from another dataframe ([`AsOf`]), or paired with another dataframe's records within a
//! time interval ([`Interval`]); and how two JSON values merge ([`merge_json`]).
//!
//! Every join links its right side's topic to the left dataframe's (see
//! [`Registry::task_inputs`](super::Registry::task_inputs)): partition `p` of both is one task,
//! their records are processed in timestamp order, and the join's state lives in the left
//! side's store. Joins match records by the key they were read with; to join on something
//! else, `set_key` first (it re-partitions). `docs/semantics.md`, "Joins", has the rules and a
//! diagram per kind.

mod asof;
mod interval;
mod saved;
mod table;

use serde_json::Value;

use super::dataframe::Edges;
use super::registry::{Ctx, Operator};
use super::{Message, StepError, Stream};

pub use asof::AsOf;
pub use interval::Interval;
pub use table::Table;

pub(crate) use table::register_table;

/// Which left records a join emits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum JoinHow {
    /// Only those with a match (the default, as in Quix Streams).
    #[default]
    Inner,
    /// Every one: without a match, the merge function gets `None` for the right side.
    Left,
}

/// What [`merge_json`] does with a field both objects have, as Quix Streams' `on_merge`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnMerge {
    /// Fails the record (the default, as in Quix Streams): the error policy decides.
    #[default]
    Raise,
    /// The left object's value stays.
    KeepLeft,
    /// The right object's value replaces it.
    KeepRight,
}

/// Adds the join operator `make` builds to `left`, fed by both sides: left messages through
/// `on_left`, right ones (timestamp and value) through `on_right`; links `right`'s topic into
/// `left`'s tasks. The operator's state is named `<kind>:<right topic>`.
fn two_sided<K, V, K2, R, U, O>(
    left: &Stream<K, V>,
    right: &Stream<K2, R>,
    kind: &str,
    make: impl FnOnce(u16, Edges<K, U>) -> O,
    on_left: impl FnMut(&mut O, &mut Ctx<'_>, Message<K, V>) -> Result<(), StepError> + 'static,
    mut on_right: impl FnMut(&mut O, &mut Ctx<'_>, i64, R) -> Result<(), StepError> + 'static,
) -> Stream<K, U>
where
    K: Clone + 'static,
    V: Clone + 'static,
    K2: Clone + 'static,
    R: Clone + 'static,
    U: Clone + 'static,
    O: Operator + 'static,
{
    left.registry.link(&left.source.name, &right.source.name);
    let name = format!("{kind}:{}", right.source.name);
    let (joined, op) = left.with_shared_operator(name, make, on_left);
    right.edges.borrow_mut().push(Box::new(move |ctx, m| {
        on_right(&mut op.borrow_mut(), ctx, m.timestamp_ms, m.value)
    }));
    joined
}

/// Merges JSON object `right` into `left` (none: `left` unchanged). Both must be objects.
pub fn merge_json(left: Value, right: Option<&Value>, on: OnMerge) -> Result<Value, String> {
    let Some(right) = right else {
        return Ok(left);
    };
    let (Value::Object(mut merged), Value::Object(fields)) = (left, right) else {
        return Err("a join merges JSON objects only".into());
    };
    for (name, value) in fields {
        match merged.get_mut(name) {
            None => {
                merged.insert(name.clone(), value.clone());
            }
            Some(_) if on == OnMerge::KeepLeft => {}
            Some(slot) if on == OnMerge::KeepRight => *slot = value.clone(),
            Some(_) => {
                return Err(format!(
                    "both sides of the join have the field {name:?} \
                     (choose OnMerge::KeepLeft or KeepRight, or merge with a function)"
                ))
            }
        }
    }
    Ok(Value::Object(merged))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_merge_by_field_and_a_shared_field_follows_on_merge() {
        let l = json!({"t": 1, "a": "left"});
        let r = json!({"u": 2, "a": "right"});
        assert!(merge_json(l.clone(), Some(&r), OnMerge::Raise)
            .unwrap_err()
            .contains("\"a\""));
        assert_eq!(
            merge_json(l.clone(), Some(&r), OnMerge::KeepLeft).unwrap(),
            json!({"t": 1, "u": 2, "a": "left"})
        );
        assert_eq!(
            merge_json(l.clone(), Some(&r), OnMerge::KeepRight).unwrap(),
            json!({"t": 1, "u": 2, "a": "right"})
        );
        assert_eq!(merge_json(l.clone(), None, OnMerge::Raise).unwrap(), l);
        assert!(merge_json(json!(1), Some(&r), OnMerge::KeepLeft).is_err());
    }
}
