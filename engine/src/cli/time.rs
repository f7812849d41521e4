//! Parsing of the times the command line accepts: milliseconds since the epoch, RFC 3339
//! date-times, and date-times without a zone (taken as local time, as Kafka's tools do).

use chrono::{DateTime, Local, NaiveDateTime, TimeZone};

/// Milliseconds since the epoch for `s`, or a message saying what forms are accepted.
pub(crate) fn parse_timestamp_ms(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Ok(dt.timestamp_millis());
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(s, fmt) {
            if let Some(local) = Local.from_local_datetime(&naive).earliest() {
                return Ok(local.timestamp_millis());
            }
        }
    }
    Err(format!(
        "cannot read time {s:?}: give milliseconds since the epoch, an RFC 3339 time \
         (2014-09-13T07:24:00Z) or a local time (2014-09-13T07:24:00)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_all_accepted_forms() {
        assert_eq!(parse_timestamp_ms("1410592800000"), Ok(1_410_592_800_000));
        assert_eq!(
            parse_timestamp_ms("2014-09-13T07:20:00Z"),
            Ok(1_410_592_800_000)
        );
        assert_eq!(
            parse_timestamp_ms("2014-09-13T09:20:00.500+02:00"),
            Ok(1_410_592_800_500)
        );
        let local = parse_timestamp_ms("2014-09-13T07:20:00").unwrap();
        let offset = Local
            .timestamp_millis_opt(local)
            .unwrap()
            .offset()
            .local_minus_utc();
        assert_eq!(local + i64::from(offset) * 1000, 1_410_592_800_000);
        assert!(parse_timestamp_ms("yesterday")
            .unwrap_err()
            .contains("yesterday"));
    }
}
