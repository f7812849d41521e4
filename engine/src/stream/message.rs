//! [`Message`]: a record as it flows through a dataframe, with decoded key and value.

use crate::log::Header;

/// A record inside a dataframe: the decoded key and value, the timestamp the pipeline works with
/// (event time when the topic has a timestamp extractor, otherwise the log record's timestamp) and
/// the headers, which are passed on to outputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Message<K, V> {
    /// The key (`None` for keyless records).
    pub key: Option<K>,
    /// The value.
    pub value: V,
    /// Timestamp in ms since the epoch.
    pub timestamp_ms: i64,
    /// Headers, in order.
    pub headers: Vec<Header>,
}

impl<K, V> Message<K, V> {
    /// The value of the first header named `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value.as_deref())
    }

    /// Sets header `name` to `value`, replacing every header of that name.
    pub fn set_header(&mut self, name: &str, value: impl Into<Vec<u8>>) {
        self.headers.retain(|h| h.key != name);
        self.headers.push(Header {
            key: name.to_owned(),
            value: Some(value.into()),
        });
    }
}
