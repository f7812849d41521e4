//! Group membership and partition ownership across threads and processes, with no broker and no
//! daemon: everything is a file lock in `groups/<group>/`, and the kernel releases a lock the
//! moment its holder dies.
//!
//! - `lock`: held briefly for every change to the group (join, leave, commit, reset).
//! - `members/<id>`: one file per live member holding its id and topics as JSON, locked by the
//!   member for its life. A member file that can be locked by someone else belongs to a dead member
//!   and is removed. A joiner locks its file before renaming it into `members/`, so a live member's
//!   file is never seen unlocked.
//! - `owners/<topic>/<partition>`: locked by the partition's current owner, and holding its id.
//!   A member consumes a partition only while it holds the lock of the file at that path: at
//!   most one owner, always. Every owner checks, after locking, that the path still names the file
//!   it locked, and before each commit, that it still does.
//! - `leases/<id>`: a member's poll deadline (wall-clock ms, `i64` BE), renewed as it polls, for
//!   members with a poll interval (Kafka's `max.poll.interval.ms`). A member past its deadline is
//!   alive (it holds its lock) but stuck: the others leave it out of the assignment, and the new
//!   owner of each of its partitions replaces the owner file (under the group lock) instead of
//!   waiting for a lock that may never be released. The stuck member finds the path no longer
//!   names its file: it owns nothing, and its commits are refused.
//! - `offsets`: committed offsets (see `offsets.rs`).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{io, GroupError, GroupResult};
use crate::log::validate_name;

/// A live member as its file describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Member id (unique within the group).
    pub id: String,
    /// Topics the member subscribed to.
    pub topics: Vec<String>,
    /// Sets of its topics that must be co-partitioned: partition `p` of every topic of a set goes
    /// to one member (the inputs of a join). Written only when there are some, so that files
    /// of members without any read as before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copartitioned: Vec<Vec<String>>,
}

/// The directory of one group.
#[derive(Clone, Debug)]
pub(crate) struct GroupDir {
    pub name: String,
    pub dir: PathBuf,
}

/// The group lock; released on drop.
pub(crate) struct GroupLock {
    _file: File,
}

impl GroupDir {
    /// The group `name` under `data_dir`; `create` makes its directories.
    pub fn new(data_dir: &Path, name: &str, create: bool) -> GroupResult<Self> {
        validate_name(name)?;
        let dir = data_dir.join("groups").join(name);
        if create {
            // Durably: a group's offsets file must not vanish with its directory on power loss.
            for sub in ["members", "owners"] {
                crate::log::create_dirs_durably(&dir.join(sub))?;
            }
        } else if !dir.is_dir() {
            return Err(GroupError::GroupNotFound(name.to_owned()));
        }
        Ok(GroupDir {
            name: name.to_owned(),
            dir,
        })
    }

    pub fn offsets_path(&self) -> PathBuf {
        self.dir.join("offsets")
    }

    /// Takes the group lock, waiting for it.
    pub fn lock(&self) -> GroupResult<GroupLock> {
        let path = self.dir.join("lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io("open group lock", &path, e))?;
        f.lock().map_err(|e| io("lock", &path, e))?;
        Ok(GroupLock { _file: f })
    }

    /// Registers a member: writes and locks its file, then renames it into `members/`. A member
    /// with a poll deadline (`Some`) writes its lease first.
    pub fn join(&self, info: &MemberInfo, deadline_ms: Option<i64>) -> GroupResult<MemberHandle> {
        validate_name(&info.id)?;
        let _g = self.lock()?;
        let lease = match deadline_ms {
            Some(deadline) => Some(self.start_lease(&info.id, deadline)?),
            None => {
                self.drop_lease(&info.id)?;
                None
            }
        };
        let members = self.dir.join("members");
        let final_path = members.join(&info.id);
        let tmp = members.join(format!("~joining-{}", info.id));
        let mut f = File::create(&tmp).map_err(|e| io("create member file", &tmp, e))?;
        f.lock().map_err(|e| io("lock member file", &tmp, e))?;
        let json =
            serde_json::to_vec(info).map_err(|e| GroupError::InvalidRequest(e.to_string()))?;
        f.write_all(&json).map_err(|e| io("write", &tmp, e))?;
        if final_path.exists() && member_alive(&final_path)? {
            let _ = std::fs::remove_file(&tmp);
            return Err(GroupError::InvalidRequest(format!(
                "member id {:?} is already in use in group {:?}",
                info.id, self.name
            )));
        }
        std::fs::rename(&tmp, &final_path).map_err(|e| io("rename", &final_path, e))?;
        Ok(MemberHandle {
            _file: f,
            path: final_path,
            lease,
        })
    }

    /// Live members, sorted by id, leaving out members past their poll deadline. Files of dead
    /// members are removed on the way.
    pub fn live_members(&self) -> GroupResult<Vec<MemberInfo>> {
        let now = crate::log::now_ms();
        let dir = self.dir.join("members");
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io("list", &dir, e)),
        };
        for entry in entries {
            let path = entry.map_err(|e| io("list", &dir, e))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.starts_with('~') {
                continue;
            }
            if !member_alive(&path)? || self.lease_expired(name, now)? {
                continue;
            }
            let mut text = String::new();
            if File::open(&path)
                .and_then(|mut f| f.read_to_string(&mut text))
                .is_err()
            {
                continue;
            }
            match serde_json::from_str::<MemberInfo>(&text) {
                Ok(info) => out.push(info),
                Err(e) => {
                    return Err(GroupError::Corrupt {
                        path,
                        position: e.column() as u64,
                        reason: format!("member file does not parse: {e}"),
                    })
                }
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    fn owner_path(&self, topic: &str, partition: u32) -> PathBuf {
        self.dir
            .join("owners")
            .join(topic)
            .join(partition.to_string())
    }

    fn lease_path(&self, member: &str) -> PathBuf {
        self.dir.join("leases").join(member)
    }

    /// Opens `member`'s lease and records that it polls again by `deadline_ms` (wall clock).
    fn start_lease(&self, member: &str, deadline_ms: i64) -> GroupResult<Lease> {
        let path = self.lease_path(member);
        let open = || {
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
        };
        let file = match open() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let dir = self.dir.join("leases");
                std::fs::create_dir_all(&dir)
                    .map_err(|e| io("create leases directory", &dir, e))?;
                open()
            }
            other => other,
        }
        .map_err(|e| io("open lease", &path, e))?;
        let lease = Lease { file, path };
        lease.renew(deadline_ms)?;
        Ok(lease)
    }

    /// Removes `member`'s lease: it has no poll deadline.
    fn drop_lease(&self, member: &str) -> GroupResult<()> {
        let path = self.lease_path(member);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove lease", &path, e)),
            _ => Ok(()),
        }
    }

    /// Whether `member` holds a lease whose deadline passed before `now_ms`. A lease cut short (a
    /// crash while it was first written) counts as none.
    pub fn lease_expired(&self, member: &str, now_ms: i64) -> GroupResult<bool> {
        let path = self.lease_path(member);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io("read lease", &path, e)),
        };
        let deadline = bytes
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map(i64::from_be_bytes);
        Ok(deadline.is_some_and(|d| d < now_ms))
    }

    /// Tries to become the owner of a partition; `None` while someone else owns it. An owner past
    /// its poll deadline is replaced: its owner file is renamed over (under the group lock, so that
    /// one member replaces it).
    pub fn try_own(
        &self,
        topic: &str,
        partition: u32,
        member: &str,
    ) -> GroupResult<Option<OwnerHandle>> {
        let path = self.owner_path(topic, partition);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| io("create owners directory", parent, e))?;
        }
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io("open owner file", &path, e))?;
        match f.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return self.take_over_if_stuck(&path, member);
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io("lock owner file", &path, e)),
        }
        let handle = OwnerHandle {
            ino: f
                .metadata()
                .map_err(|e| io("stat owner file", &path, e))?
                .ino(),
            file: f,
            path,
        };
        // The path may have been given a new file (a takeover) between open and lock.
        if !handle.still_owned()? {
            return Ok(None);
        }
        handle.record(member)?;
        Ok(Some(handle))
    }

    /// Replaces the owner file at `path` by one locked by `member`, if its holder is past its poll
    /// deadline.
    fn take_over_if_stuck(&self, path: &Path, member: &str) -> GroupResult<Option<OwnerHandle>> {
        let _g = self.lock()?;
        let holder = std::fs::read_to_string(path).unwrap_or_default();
        if holder.is_empty() || holder == member || validate_name(&holder).is_err() {
            return Ok(None);
        }
        if !self.lease_expired(&holder, crate::log::now_ms())? {
            return Ok(None);
        }
        let dir = path.parent().unwrap_or(path);
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("owner");
        let staged = dir.join(format!("~{name}-{member}"));
        let f = File::create(&staged).map_err(|e| io("create owner file", &staged, e))?;
        f.lock().map_err(|e| io("lock owner file", &staged, e))?;
        let handle = OwnerHandle {
            ino: f
                .metadata()
                .map_err(|e| io("stat owner file", &staged, e))?
                .ino(),
            file: f,
            path: path.to_owned(),
        };
        let mut file = &handle.file;
        file.write_all(member.as_bytes())
            .map_err(|e| io("write", &staged, e))?;
        std::fs::rename(&staged, path).map_err(|e| io("rename", path, e))?;
        tracing::warn!(group = %self.name, owner = %holder, new_owner = %member,
            partition = %path.display(), "took over a partition from a member past its poll deadline");
        Ok(Some(handle))
    }

    /// The member that owns a partition now, if any.
    pub fn owner_of(&self, topic: &str, partition: u32) -> GroupResult<Option<String>> {
        let path = self.owner_path(topic, partition);
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("open owner file", &path, e)),
        };
        match f.try_lock_shared() {
            Ok(()) => Ok(None),
            Err(std::fs::TryLockError::WouldBlock) => Ok(std::fs::read_to_string(&path)
                .ok()
                .filter(|s| !s.is_empty())),
            Err(std::fs::TryLockError::Error(e)) => Err(io("lock owner file", &path, e)),
        }
    }
}

/// Whether the member file at `path` is locked by a live member; removes it if not.
fn member_alive(path: &Path) -> GroupResult<bool> {
    let f = match OpenOptions::new().write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io("open member file", path, e)),
    };
    match f.try_lock() {
        Err(std::fs::TryLockError::WouldBlock) => Ok(true),
        Err(std::fs::TryLockError::Error(e)) => Err(io("lock member file", path, e)),
        Ok(()) => {
            // Nobody holds it: the member is gone. Remove its file while we hold the lock.
            match std::fs::remove_file(path) {
                Ok(()) => Ok(false),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(io("remove dead member file", path, e)),
            }
        }
    }
}

/// A member's registration; leaving the group is dropping it.
pub(crate) struct MemberHandle {
    _file: File,
    path: PathBuf,
    lease: Option<Lease>,
}

impl MemberHandle {
    /// Moves the member's poll deadline to `deadline_ms` (no-op without a lease).
    pub fn renew_lease(&self, deadline_ms: i64) -> GroupResult<()> {
        self.lease.as_ref().map_or(Ok(()), |l| l.renew(deadline_ms))
    }
}

impl Drop for MemberHandle {
    fn drop(&mut self) {
        // Removing the files is tidiness only: the lock, released with the file, is what says the
        // member is gone.
        let _ = std::fs::remove_file(&self.path);
        if let Some(lease) = &self.lease {
            let _ = std::fs::remove_file(&lease.path);
        }
    }
}

/// A member's poll deadline file, kept open for cheap renewals.
struct Lease {
    file: File,
    path: PathBuf,
}

impl Lease {
    fn renew(&self, deadline_ms: i64) -> GroupResult<()> {
        self.file
            .write_all_at(&deadline_ms.to_be_bytes(), 0)
            .map_err(|e| io("write lease", &self.path, e))
    }
}

/// Ownership of one partition: the lock of the owner file at `path`, as long as the path names
/// it; released on drop.
pub(crate) struct OwnerHandle {
    file: File,
    path: PathBuf,
    ino: u64,
}

impl OwnerHandle {
    /// Whether the owner file at the path is still the one this handle locked (a member past its
    /// poll deadline may have been replaced).
    pub fn still_owned(&self) -> GroupResult<bool> {
        match std::fs::metadata(&self.path) {
            Ok(m) => Ok(m.ino() == self.ino),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io("stat owner file", &self.path, e)),
        }
    }

    fn record(&self, member: &str) -> GroupResult<()> {
        self.file
            .set_len(0)
            .map_err(|e| io("truncate", &self.path, e))?;
        self.file
            .write_all_at(member.as_bytes(), 0)
            .map_err(|e| io("write", &self.path, e))
    }
}

/// Round-robin assignment, as Kafka's `RoundRobinAssignor`: all topic-partitions in order, dealt
/// to the members (sorted by id) in turn, skipping members not subscribed to the topic. Topics a
/// member lists as co-partitioned are dealt together: partition `p` of all of them is one unit,
/// dealt where the first of them would be, to a member subscribed to all of them (as Kafka
/// Streams assigns a task). Every member computes the same result from the same membership.
pub(crate) fn assign(
    members: &[MemberInfo],
    partitions: &BTreeMap<String, u32>,
) -> BTreeMap<String, Vec<(String, u32)>> {
    let mut out: BTreeMap<String, Vec<(String, u32)>> =
        members.iter().map(|m| (m.id.clone(), Vec::new())).collect();
    if members.is_empty() {
        return out;
    }
    // The set each topic is dealt with (itself when alone), by the set's first topic.
    let mut unit_of: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for set in members.iter().flat_map(|m| &m.copartitioned) {
        let mut topics: Vec<&str> = set.iter().map(String::as_str).collect();
        topics.sort_unstable();
        topics.dedup();
        for t in &topics {
            unit_of.entry(t).or_insert_with(|| topics.clone());
        }
    }
    let mut next = 0usize;
    for (topic, &count) in partitions {
        let unit: Vec<&str> = match unit_of.get(topic.as_str()) {
            Some(set) if set.first() != Some(&topic.as_str()) => continue, // dealt with its first
            Some(set) => set.clone(),
            None => vec![topic.as_str()],
        };
        for p in 0..count {
            let parts: Vec<&str> = (unit.iter().copied())
                .filter(|t| partitions.get(*t).is_some_and(|&n| p < n))
                .collect();
            for step in 0..members.len() {
                let m = &members[(next + step) % members.len()];
                if parts.iter().all(|t| m.topics.iter().any(|s| s == t)) {
                    if let Some(v) = out.get_mut(&m.id) {
                        v.extend(parts.iter().map(|t| ((*t).to_owned(), p)));
                    }
                    next = (next + step + 1) % members.len();
                    break;
                }
            }
        }
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: &str, topics: &[&str]) -> MemberInfo {
        MemberInfo {
            id: id.into(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            copartitioned: Vec::new(),
        }
    }

    #[test]
    fn co_partitioned_topics_give_each_partition_number_to_one_member() {
        let parts: BTreeMap<String, u32> = [
            ("left".to_string(), 4),
            ("right".to_string(), 4),
            ("solo".to_string(), 3),
        ]
        .into();
        let joined = |id: &str| MemberInfo {
            copartitioned: vec![vec!["right".into(), "left".into()]],
            ..m(id, &["left", "right", "solo"])
        };
        for members in [
            vec![joined("a"), joined("b")],
            vec![joined("a"), joined("b"), joined("c")],
        ] {
            let out = assign(&members, &parts);
            let mut all: Vec<_> = out.values().flatten().cloned().collect();
            all.sort();
            assert_eq!(all.len(), 11, "each partition exactly once: {out:?}");
            all.dedup();
            assert_eq!(all.len(), 11);
            for owned in out.values() {
                for (t, p) in owned {
                    if t == "left" {
                        assert!(owned.contains(&("right".to_string(), *p)), "{out:?}");
                    }
                }
            }
            let sizes: Vec<usize> = out.values().map(Vec::len).collect();
            assert!(sizes.iter().all(|&s| s >= 2), "{out:?}");
        }
        // A member not subscribed to both sides gets neither.
        let members = [joined("a"), m("b", &["left", "solo"])];
        let out = assign(&members, &parts);
        assert!(out["b"].iter().all(|(t, _)| t == "solo"), "{out:?}");
    }

    #[test]
    fn round_robin_is_fair_and_respects_subscriptions() {
        let parts: BTreeMap<String, u32> = [("a".to_string(), 6), ("b".to_string(), 3)].into();
        let members = [m("m1", &["a", "b"]), m("m2", &["a", "b"]), m("m3", &["a"])];
        let out = assign(&members, &parts);
        let sizes: Vec<usize> = out.values().map(Vec::len).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 9);
        assert!(sizes.iter().all(|s| (2..=4).contains(s)), "{out:?}");
        assert!(out["m3"].iter().all(|(t, _)| t == "a"));
        let mut all: Vec<_> = out.values().flatten().cloned().collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 9, "each partition exactly once");
        let six: BTreeMap<String, u32> = [("t".to_string(), 6)].into();
        let three = [m("x", &["t"]), m("y", &["t"]), m("z", &["t"])];
        assert!(assign(&three, &six).values().all(|v| v.len() == 2));
    }

    #[test]
    fn dead_members_are_noticed_and_owners_are_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let g = GroupDir::new(dir.path(), "g", true).unwrap();
        let a = g.join(&m("a", &["t"]), None).unwrap();
        let b = g.join(&m("b", &["t"]), None).unwrap();
        assert!(g.join(&m("a", &["t"]), None).is_err(), "id in use");
        assert_eq!(g.live_members().unwrap().len(), 2);
        drop(a);
        assert_eq!(g.live_members().unwrap(), vec![m("b", &["t"])]);
        let own = g.try_own("t", 0, "b").unwrap().unwrap();
        assert!(g.try_own("t", 0, "c").unwrap().is_none());
        assert_eq!(g.owner_of("t", 0).unwrap().as_deref(), Some("b"));
        drop(own);
        assert_eq!(g.owner_of("t", 0).unwrap(), None);
        drop(b);
        assert!(g.live_members().unwrap().is_empty());
    }
}
