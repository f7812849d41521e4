//! The parameters of the console's requests (queries and forms), parsed and checked into what
//! [`crate::inspect`] takes; a bad one is a 400 naming the parameter.

use axum::http::StatusCode;
use eddy::ResetTarget;
use serde::Deserialize;

use crate::inspect::{self, MessageQuery, ResetRequest, Start};
use crate::routes::{checked, Failure, Reply};

/// The query of the messages page and API.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct MessagesParams {
    /// A partition number, or empty for all.
    pub partition: Option<String>,
    /// `end` (default), `beginning`, `offset` or `time`.
    pub from: Option<String>,
    pub offset: Option<String>,
    /// RFC 3339, a local date-time (UTC), or ms since the epoch.
    pub time: Option<String>,
    pub key: Option<String>,
    pub limit: Option<String>,
}

pub(crate) fn bad(message: String) -> Failure {
    Failure::new(StatusCode::BAD_REQUEST, message)
}

pub(crate) fn nonempty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl MessagesParams {
    pub(crate) fn query(&self) -> Reply<MessageQuery> {
        let number = |what: &str, v: &str| {
            v.parse::<u64>()
                .map_err(|_| bad(format!("{what}: expected a number, got {v:?}")))
        };
        let partition = nonempty(&self.partition)
            .map(|p| number("partition", p))
            .transpose()?;
        let partition = partition
            .map(|p| u32::try_from(p).map_err(|_| bad(format!("partition {p} is out of range"))))
            .transpose()?;
        let start = match nonempty(&self.from).unwrap_or("end") {
            "end" => Start::End,
            "beginning" => Start::Beginning,
            "offset" => Start::Offset(number("offset", nonempty(&self.offset).unwrap_or("0"))?),
            "time" => Start::Timestamp(parse_time(nonempty(&self.time).unwrap_or(""))?),
            other => {
                return Err(bad(format!(
                    "from: expected end, beginning, offset or time, got {other:?}"
                )))
            }
        };
        let limit = nonempty(&self.limit)
            .map(|l| number("limit", l))
            .transpose()?
            .unwrap_or(50);
        Ok(MessageQuery {
            partition,
            start,
            limit: usize::try_from(limit)
                .unwrap_or(inspect::MAX_PAGE)
                .min(inspect::MAX_PAGE),
            key: nonempty(&self.key).map(str::to_owned),
        })
    }
}

/// ms since the epoch, RFC 3339, or a date-time without zone (taken as UTC).
pub(crate) fn parse_time(text: &str) -> Reply<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc().timestamp_millis());
        }
    }
    Err(bad(format!("time: expected RFC 3339 (2024-05-01T12:00:00Z), a date-time or ms since the epoch, got {text:?}")))
}

/// The query of charts.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct ChartParams {
    /// Dotted path of the number in each JSON value, e.g. `temperature.mean`.
    pub field: Option<String>,
    /// How many of the newest records to plot (default 2,000, at most 20,000).
    pub last: Option<String>,
}

/// Most records one chart reads.
const MAX_CHART_RECORDS: usize = 20_000;

impl ChartParams {
    pub(crate) fn field(&self) -> Reply<String> {
        let field = nonempty(&self.field).ok_or_else(|| {
            bad("field: say which number to plot, e.g. field=temperature.mean".into())
        })?;
        if field.len() > 200 {
            return Err(bad("field: at most 200 characters".into()));
        }
        Ok(field.to_owned())
    }

    pub(crate) fn last(&self) -> Reply<usize> {
        let last = nonempty(&self.last)
            .map(|l| {
                l.parse::<usize>()
                    .map_err(|_| bad(format!("last: expected a number, got {l:?}")))
            })
            .transpose()?;
        Ok(last.unwrap_or(2000).clamp(1, MAX_CHART_RECORDS))
    }
}

/// A reset as the group page's form (and the API's JSON body) asks for it.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct ResetParams {
    /// A topic, or empty for all of the group's.
    pub topic: Option<String>,
    /// `earliest`, `latest`, `offset`, `datetime`, `shift-by` or `duration`.
    pub to: String,
    /// The offset, time, shift or ISO-8601 duration the target needs.
    pub value: Option<String>,
    /// Apply it (otherwise a dry run).
    pub execute: Option<String>,
    /// Keep applications' state.
    pub keep_state: Option<String>,
    /// The page's token (forms only).
    pub token: Option<String>,
}

pub(crate) fn flag(v: &Option<String>) -> bool {
    matches!(nonempty(v), Some("1" | "true" | "on" | "yes"))
}

impl ResetParams {
    pub(crate) fn request(&self) -> Reply<ResetRequest> {
        let value = nonempty(&self.value).unwrap_or("");
        let needs = |what: &str| bad(format!("to {}: give the {what} in value", self.to));
        let target = match self.to.as_str() {
            "earliest" => ResetTarget::Earliest,
            "latest" => ResetTarget::Latest,
            "current" => ResetTarget::Current,
            "offset" => ResetTarget::Offset(value.parse().map_err(|_| needs("offset"))?),
            "shift-by" => ResetTarget::ShiftBy(value.parse().map_err(|_| needs("shift (a number, negative to go back)"))?),
            "datetime" => ResetTarget::Datetime(parse_time(value)?),
            "duration" => ResetTarget::Duration(eddy::parse_iso_duration(value).map_err(|e| bad(e.to_string()))?),
            other => return Err(bad(format!("to: expected earliest, latest, current, offset, shift-by, datetime or duration, got {other:?}"))),
        };
        let topic = nonempty(&self.topic).map(str::to_owned);
        if let Some(t) = &topic {
            checked("topic", t)?;
        }
        Ok(ResetRequest {
            topic,
            target,
            keep_state: flag(&self.keep_state),
        })
    }
}
