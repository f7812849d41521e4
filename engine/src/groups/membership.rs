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
//!   A member consumes a partition only while it holds that lock: at most one owner, always.
//! - `offsets`: committed offsets (see `offsets.rs`).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
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

    /// Registers a member: writes and locks its file, then renames it into `members/`.
    pub fn join(&self, info: &MemberInfo) -> GroupResult<MemberHandle> {
        validate_name(&info.id)?;
        let _g = self.lock()?;
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
        })
    }

    /// Live members, sorted by id. Files of dead members are removed on the way.
    pub fn live_members(&self) -> GroupResult<Vec<MemberInfo>> {
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
            if !member_alive(&path)? {
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

    /// Tries to become the owner of a partition; `None` while someone else owns it.
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
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io("open owner file", &path, e))?;
        match f.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => return Err(io("lock owner file", &path, e)),
        }
        f.set_len(0).map_err(|e| io("truncate", &path, e))?;
        f.write_all(member.as_bytes())
            .map_err(|e| io("write", &path, e))?;
        Ok(Some(OwnerHandle(f)))
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
}

impl Drop for MemberHandle {
    fn drop(&mut self) {
        // Removing the file is tidiness only: the lock, released with the file, is what says the
        // member is gone.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Ownership of one partition; released on drop.
pub(crate) struct OwnerHandle(#[allow(dead_code)] File);

/// Round-robin assignment, as Kafka's `RoundRobinAssignor`: all topic-partitions in order, dealt
/// to the members (sorted by id) in turn, skipping members not subscribed to the topic. Every
/// member computes the same result from the same membership.
pub(crate) fn assign(
    members: &[MemberInfo],
    partitions: &BTreeMap<String, u32>,
) -> BTreeMap<String, Vec<(String, u32)>> {
    let mut out: BTreeMap<String, Vec<(String, u32)>> =
        members.iter().map(|m| (m.id.clone(), Vec::new())).collect();
    if members.is_empty() {
        return out;
    }
    let mut next = 0usize;
    for (topic, &count) in partitions {
        for p in 0..count {
            for step in 0..members.len() {
                let m = &members[(next + step) % members.len()];
                if m.topics.iter().any(|t| t == topic) {
                    if let Some(v) = out.get_mut(&m.id) {
                        v.push((topic.clone(), p));
                    }
                    next = (next + step + 1) % members.len();
                    break;
                }
            }
        }
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
        }
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
        let a = g.join(&m("a", &["t"])).unwrap();
        let b = g.join(&m("b", &["t"])).unwrap();
        assert!(g.join(&m("a", &["t"])).is_err(), "id in use");
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
