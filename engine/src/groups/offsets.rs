//! The committed offsets of one group: `groups/<group>/offsets`, an append-only file of commit
//! records, each covering any number of topic-partitions and guarded by a CRC-32C.
//!
//! Record: `magic u8 (1 or 2), length u32 BE, crc u32 BE (CRC-32C of the payload), payload`;
//! payload: `timestamp_ms i64 BE, [magic 2 only: metadata_len u16 BE, metadata UTF-8], count u32
//! BE, count × (topic_len u16 BE, topic UTF-8, partition u32 BE, offset u64 BE)`. The offsets are
//! the last value of each topic-partition over all records; a partition's metadata (Kafka's commit
//! metadata, empty in magic 1) is that of the record that set its offset.
//!
//! Crash atomicity: a commit is one `write` of one record; a record cut short by a crash fails its
//! CRC and is ignored, so the group keeps the old offsets (never a mix, never none). The next
//! committer truncates such a tail before appending. Only the last record can be torn: a damaged
//! record with an intact one after it is corruption, reported as an error (falling back to the
//! offsets before it would rewind the group, and the next commit would cut the intact records). When the file has grown past a few times its
//! live contents it is rewritten as a single record into a temporary file, fsynced, and renamed over
//! the old one. Every writer holds the group lock (see `membership.rs`).
//!
//! Commits are not fsynced unless asked: a process crash keeps them (page cache), and a power loss
//! can only move offsets back to an earlier commit, which re-delivers records (at-least-once) but
//! never skips one.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::error::{io, GroupError, GroupResult};

const MAGIC: u8 = 1;
const MAGIC_WITH_METADATA: u8 = 2;
const HEAD: usize = 9;
/// Largest commit record accepted from disk.
const MAX_RECORD: usize = 64 << 20;

/// A topic-partition.
pub type TopicPartition = (String, u32);

/// The committed offsets of a group, and where the file's valid contents end.
#[derive(Default, Debug, Clone)]
pub(crate) struct OffsetsFile {
    pub offsets: BTreeMap<TopicPartition, u64>,
    /// Metadata of each partition's last commit, when not empty.
    pub metadata: BTreeMap<TopicPartition, String>,
    /// Byte length of the valid records read so far.
    valid_len: u64,
    records: u64,
    /// Inode of the file read so far: a rewrite replaces the inode.
    inode: u64,
}

fn encode(offsets: &[(&str, u32, u64)], metadata: &str, timestamp_ms: i64) -> Vec<u8> {
    let mut payload = Vec::with_capacity(14 + metadata.len() + offsets.len() * 32);
    payload.extend_from_slice(&timestamp_ms.to_be_bytes());
    if !metadata.is_empty() {
        payload.extend_from_slice(&(metadata.len() as u16).to_be_bytes());
        payload.extend_from_slice(metadata.as_bytes());
    }
    payload.extend_from_slice(&(offsets.len() as u32).to_be_bytes());
    for (topic, partition, offset) in offsets {
        payload.extend_from_slice(&(topic.len() as u16).to_be_bytes());
        payload.extend_from_slice(topic.as_bytes());
        payload.extend_from_slice(&partition.to_be_bytes());
        payload.extend_from_slice(&offset.to_be_bytes());
    }
    let mut record = Vec::with_capacity(HEAD + payload.len());
    record.push(if metadata.is_empty() {
        MAGIC
    } else {
        MAGIC_WITH_METADATA
    });
    record.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    record.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    record.extend_from_slice(&payload);
    record
}

/// Applies one payload of a record with `magic`; `None` if it is malformed.
fn apply(
    magic: u8,
    payload: &[u8],
    offsets: &mut BTreeMap<TopicPartition, u64>,
    metadata: &mut BTreeMap<TopicPartition, String>,
) -> Option<()> {
    let mut pos = 8usize;
    let take = |pos: &mut usize, n: usize| -> Option<&[u8]> {
        let s = payload.get(*pos..*pos + n)?;
        *pos += n;
        Some(s)
    };
    let meta = if magic == MAGIC_WITH_METADATA {
        let len = u16::from_be_bytes(take(&mut pos, 2)?.try_into().ok()?) as usize;
        std::str::from_utf8(take(&mut pos, len)?).ok()?.to_owned()
    } else {
        String::new()
    };
    let count = u32::from_be_bytes(take(&mut pos, 4)?.try_into().ok()?);
    let mut staged = Vec::with_capacity((count as usize).min(payload.len() / 14));
    for _ in 0..count {
        let len = u16::from_be_bytes(take(&mut pos, 2)?.try_into().ok()?) as usize;
        let topic = std::str::from_utf8(take(&mut pos, len)?).ok()?.to_owned();
        let partition = u32::from_be_bytes(take(&mut pos, 4)?.try_into().ok()?);
        let offset = u64::from_be_bytes(take(&mut pos, 8)?.try_into().ok()?);
        staged.push(((topic, partition), offset));
    }
    (pos == payload.len()).then_some(())?;
    for (tp, offset) in staged {
        if meta.is_empty() {
            metadata.remove(&tp);
        } else {
            metadata.insert(tp.clone(), meta.clone());
        }
        offsets.insert(tp, offset);
    }
    Some(())
}

/// What the bytes after the last valid record are.
enum Shape {
    /// The start of a record whose end is missing: a write cut short (or still under way).
    Cut,
    /// A whole record that failed its CRC or does not parse.
    Whole,
    /// Anything else: garbage, or zeros.
    NotARecord,
}

/// The header of the record at the start of `bytes`: magic, payload length, CRC.
struct Head {
    magic: u8,
    length: usize,
    crc: u32,
}

impl Head {
    fn read(bytes: &[u8]) -> Option<Head> {
        let h = bytes.get(..HEAD)?;
        Some(Head {
            magic: h[0],
            length: u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize,
            crc: u32::from_be_bytes([h[5], h[6], h[7], h[8]]),
        })
    }

    fn known_magic(&self) -> bool {
        self.magic == MAGIC || self.magic == MAGIC_WITH_METADATA
    }

    /// The payload after this header in `bytes`, if all of it is there and its CRC matches.
    fn intact_payload<'a>(&self, bytes: &'a [u8]) -> Option<&'a [u8]> {
        bytes
            .get(HEAD..HEAD + self.length)
            .filter(|p| crc32c::crc32c(p) == self.crc)
    }
}

fn record_shape(bytes: &[u8]) -> Shape {
    match Head::read(bytes) {
        None => Shape::Cut,
        Some(h) if !h.known_magic() || h.length > MAX_RECORD => Shape::NotARecord,
        Some(h) if bytes.len() >= HEAD + h.length => Shape::Whole,
        Some(_) => Shape::Cut,
    }
}

/// The position of the first intact record in `bytes` after position 0 (a damaged record), if any.
fn first_intact_record(bytes: &[u8]) -> Option<usize> {
    (1..bytes.len().saturating_sub(HEAD)).find(|&at| {
        let rest = bytes.get(at..).unwrap_or_default();
        let Some(h) = Head::read(rest).filter(|h| h.known_magic() && h.length >= 12) else {
            return false;
        };
        let (mut offsets, mut metadata) = (BTreeMap::new(), BTreeMap::new());
        h.intact_payload(rest)
            .is_some_and(|p| apply(h.magic, p, &mut offsets, &mut metadata).is_some())
    })
}

impl OffsetsFile {
    /// Reads records from where the last read stopped to the end of the file. Stops at the first
    /// invalid record, leaving `valid_len` there: a torn tail when nothing intact follows it,
    /// else a `Corrupt` error naming the file and position.
    pub fn refresh(&mut self, path: &Path) -> GroupResult<()> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                *self = OffsetsFile::default();
                return Ok(());
            }
            Err(e) => return Err(io("open", path, e)),
        };
        let meta = file.metadata().map_err(|e| io("stat", path, e))?;
        let len = meta.len();
        if meta.ino() != self.inode || len < self.valid_len {
            // New, or rewritten by another member: read it from the start.
            *self = OffsetsFile {
                inode: meta.ino(),
                ..OffsetsFile::default()
            };
        }
        if len == self.valid_len {
            return Ok(());
        }
        let mut bytes = vec![0u8; (len - self.valid_len) as usize];
        file.read_exact_at(&mut bytes, self.valid_len)
            .map_err(|e| io("read", path, e))?;
        let mut pos = 0usize;
        while let Some(h) = Head::read(bytes.get(pos..).unwrap_or_default()) {
            if !h.known_magic() || h.length > MAX_RECORD {
                break;
            }
            let rest = bytes.get(pos..).unwrap_or_default();
            let applied = h.intact_payload(rest).is_some_and(|p| {
                apply(h.magic, p, &mut self.offsets, &mut self.metadata).is_some()
            });
            if !applied {
                break;
            }
            pos += HEAD + h.length;
            self.records += 1;
        }
        let damaged_at = self.valid_len + pos as u64;
        self.valid_len += pos as u64;
        let rest = bytes.get(pos..).unwrap_or_default();
        if rest.is_empty() {
            return Ok(());
        }
        if let Some(h) = Head::read(rest).filter(|h| h.magic > MAGIC_WITH_METADATA) {
            if h.intact_payload(rest).is_some() {
                return Err(GroupError::Log(crate::log::LogError::UnsupportedFormat {
                    path: path.to_owned(),
                    what: "commit record",
                    found: u64::from(h.magic),
                    supported: u64::from(MAGIC_WITH_METADATA),
                }));
            }
        }
        if let Some(next) = first_intact_record(rest) {
            return Err(GroupError::Corrupt {
                path: path.to_owned(),
                position: damaged_at,
                reason: format!(
                    "the commit record here is damaged and an intact one follows at byte {}: \
                     this is not a torn write, and falling back to older offsets would rewind \
                     the group (nothing was changed)",
                    damaged_at + next as u64
                ),
            });
        }
        match record_shape(rest) {
            Shape::Cut => {}
            Shape::Whole => {
                tracing::warn!(path = %path.display(), position = damaged_at,
                    "the last commit record is damaged; the group keeps the offsets committed before it");
            }
            Shape::NotARecord => {
                return Err(GroupError::Corrupt {
                    path: path.to_owned(),
                    position: damaged_at,
                    reason: format!(
                        "{} bytes here do not form a commit record (nothing was changed)",
                        rest.len()
                    ),
                })
            }
        }
        Ok(())
    }

    /// Appends one commit record with `metadata` for all its offsets (the caller holds the group
    /// lock and has just refreshed). Truncates an invalid tail first. Rewrites the file when it has
    /// grown large.
    pub fn commit(
        &mut self,
        path: &Path,
        offsets: &[(&str, u32, u64)],
        metadata: &str,
        fsync: bool,
        now_ms: i64,
    ) -> GroupResult<()> {
        let existed = path.exists();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .read(true)
            .open(path)
            .map_err(|e| io("open", path, e))?;
        if fsync && !existed {
            // The new file's name must survive a power loss along with its first commit.
            if let Some(dir) = path.parent() {
                crate::log::sync_dir(dir)?;
            }
        }
        let meta = file.metadata().map_err(|e| io("stat", path, e))?;
        if meta.ino() != self.inode {
            // Created just now: nothing was read from it yet.
            self.inode = meta.ino();
            self.valid_len = 0;
        }
        let len = meta.len();
        if len > self.valid_len {
            file.set_len(self.valid_len)
                .map_err(|e| io("truncate torn commit", path, e))?;
        }
        let record = encode(offsets, metadata, now_ms);
        file.write_all_at(&record, self.valid_len)
            .map_err(|e| io("write", path, e))?;
        if fsync {
            file.sync_data().map_err(|e| io("fsync", path, e))?;
        }
        for (t, p, o) in offsets {
            let tp = ((*t).to_owned(), *p);
            if metadata.is_empty() {
                self.metadata.remove(&tp);
            } else {
                self.metadata.insert(tp.clone(), metadata.to_owned());
            }
            self.offsets.insert(tp, *o);
        }
        self.valid_len += record.len() as u64;
        self.records += 1;
        if self.records > 1000 && self.valid_len > 64 * 1024 {
            self.rewrite(path, now_ms)?;
        }
        Ok(())
    }

    /// Replaces the file by one record per distinct metadata with the current offsets (temporary
    /// file, fsync, rename, directory fsync), so that it never holds less than a whole set.
    pub fn rewrite(&mut self, path: &Path, now_ms: i64) -> GroupResult<()> {
        let mut by_metadata: BTreeMap<&str, Vec<(&str, u32, u64)>> = BTreeMap::new();
        for ((t, p), o) in &self.offsets {
            let meta = self
                .metadata
                .get(&(t.clone(), *p))
                .map_or("", String::as_str);
            by_metadata
                .entry(meta)
                .or_default()
                .push((t.as_str(), *p, *o));
        }
        let records = by_metadata.len() as u64;
        let record: Vec<u8> = by_metadata
            .iter()
            .flat_map(|(meta, all)| encode(all, meta, now_ms))
            .collect();
        let tmp = PathBuf::from(format!("{}.tmp", path.display()));
        let mut f = File::create(&tmp).map_err(|e| io("create", &tmp, e))?;
        f.write_all(&record).map_err(|e| io("write", &tmp, e))?;
        f.sync_all().map_err(|e| io("fsync", &tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| io("rename", path, e))?;
        if let Some(dir) = path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io("fsync directory", dir, e))?;
        }
        self.valid_len = record.len() as u64;
        self.records = records;
        self.inode = std::fs::metadata(path)
            .map_err(|e| io("stat", path, e))?
            .ino();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_accumulate_and_a_torn_tail_is_ignored_then_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("offsets");
        let mut w = OffsetsFile::default();
        w.commit(&path, &[("a", 0, 5), ("a", 1, 7)], "", false, 1)
            .unwrap();
        w.commit(&path, &[("a", 0, 9)], "", true, 2).unwrap();
        // A commit cut short by a crash: half a record at the end.
        let half = encode(&[("a", 0, 100), ("a", 1, 100)], "", 3);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&half[..half.len() / 2]).unwrap();
        let mut r = OffsetsFile::default();
        r.refresh(&path).unwrap();
        assert_eq!(r.offsets.get(&("a".into(), 0)), Some(&9));
        assert_eq!(
            r.offsets.get(&("a".into(), 1)),
            Some(&7),
            "never a mix of old and new"
        );
        r.commit(&path, &[("a", 1, 8)], "", false, 4).unwrap();
        let mut again = OffsetsFile::default();
        again.refresh(&path).unwrap();
        assert_eq!(
            again.offsets.get(&("a".into(), 1)),
            Some(&8),
            "commit after a torn tail is read"
        );
    }

    #[test]
    fn rewrite_keeps_every_offset_and_readers_follow_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("offsets");
        let mut w = OffsetsFile::default();
        let mut reader = OffsetsFile::default();
        for i in 0..3000u64 {
            let meta = if i % 4 == 1 { "odd" } else { "" };
            w.commit(&path, &[("t", (i % 4) as u32, i)], meta, false, 0)
                .unwrap();
            if i % 500 == 0 {
                reader.refresh(&path).unwrap();
            }
        }
        assert!(
            std::fs::metadata(&path).unwrap().len() < 200_000,
            "file was compacted"
        );
        reader.refresh(&path).unwrap();
        for p in 0..4u32 {
            assert_eq!(reader.offsets[&("t".to_string(), p)], 2996 + u64::from(p));
        }
        assert_eq!(reader.metadata.get(&("t".to_string(), 1)).unwrap(), "odd");
        assert_eq!(reader.metadata.len(), 1, "metadata survives the rewrite");
    }

    fn five_commits(path: &Path) -> Vec<(u64, u64)> {
        let mut w = OffsetsFile::default();
        let mut spans = Vec::new();
        for i in 0..5u64 {
            let start = std::fs::metadata(path).map_or(0, |m| m.len());
            w.commit(path, &[("t", 0, (i + 1) * 100)], "", false, 1)
                .unwrap();
            spans.push((start, std::fs::metadata(path).unwrap().len()));
        }
        spans
    }

    #[test]
    fn a_damaged_record_before_intact_ones_is_corruption_not_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("offsets");
        let spans = five_commits(&path);
        let mut bytes = std::fs::read(&path).unwrap();
        let (start, end) = spans[1];
        bytes[(start + end) as usize / 2] ^= 0x10; // inside commit record 2 of 5
        std::fs::write(&path, &bytes).unwrap();
        let mut r = OffsetsFile::default();
        match r.refresh(&path) {
            Err(GroupError::Corrupt {
                position, reason, ..
            }) => {
                assert_eq!(position, start);
                assert!(reason.contains(&format!("byte {}", spans[2].0)), "{reason}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        // Nothing was changed: a committer refreshes first and so refuses too.
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        let mut w = OffsetsFile::default();
        assert!(w.refresh(&path).is_err());
    }

    #[test]
    fn garbage_or_zeros_in_the_middle_are_corruption_and_a_damaged_last_record_is_a_tail() {
        for fill in [0x00u8, 0x5a] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("offsets");
            let spans = five_commits(&path);
            let mut bytes = std::fs::read(&path).unwrap();
            let (start, end) = spans[0];
            bytes[start as usize..end as usize].fill(fill);
            std::fs::write(&path, &bytes).unwrap();
            let mut r = OffsetsFile::default();
            assert!(
                matches!(
                    r.refresh(&path),
                    Err(GroupError::Corrupt { position: 0, .. })
                ),
                "fill {fill:#x}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("offsets");
        let spans = five_commits(&path);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        let mut r = OffsetsFile::default();
        r.refresh(&path).unwrap();
        assert_eq!(
            r.offsets[&("t".to_string(), 0)],
            400,
            "the commit before the tail"
        );
        assert_eq!(r.valid_len, spans[4].0);
    }

    #[test]
    fn a_file_of_garbage_or_zeros_is_corruption_not_an_empty_group() {
        for fill in [0x00u8, 0x5a] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("offsets");
            std::fs::write(&path, vec![fill; 300]).unwrap();
            let mut r = OffsetsFile::default();
            assert!(
                matches!(
                    r.refresh(&path),
                    Err(GroupError::Corrupt { position: 0, .. })
                ),
                "fill {fill:#x}"
            );
        }
    }

    #[test]
    fn malformed_payloads_are_rejected_whole() {
        for meta in ["", "checkpoint"] {
            let rec = encode(&[("t", 0, 1)], meta, 0);
            let payload = &rec[HEAD..];
            let (mut m, mut md) = (BTreeMap::new(), BTreeMap::new());
            assert!(apply(rec[0], &payload[..payload.len() - 1], &mut m, &mut md).is_none());
            assert!(m.is_empty());
            assert!(apply(rec[0], payload, &mut m, &mut md).is_some());
            assert_eq!(
                md.get(&("t".to_string(), 0)).map(String::as_str),
                (!meta.is_empty()).then_some(meta)
            );
        }
    }
}
