//! A filesystem for durability tests: FUSE, in memory, with the durability rules of a real disk
//! made strict. A file's bytes survive a simulated power loss only as they were at its last
//! `fsync`/`fdatasync`; a directory's entries (creations, renames, deletions) only as they were at
//! its last `fsync` of the directory. [`FaultFs::power_loss`] unmounts, throws away everything
//! else and mounts what is left at the same place. [`FaultFs::fail_fsyncs`] makes fsyncs of
//! matching files fail with `EIO`, as a dying disk does.
//!
//! Invariants: the mount is always of one consistent in-memory tree; a power loss happens only
//! with no process using the mount (the caller kills them first), so the kernel holds no dirty
//! pages that could reach the new tree.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request,
    TimeOrNow, WriteFlags,
};
use parking_lot::Mutex;

const TTL: Duration = Duration::from_millis(200);
/// `statfs` reports this much room: plenty for tests, small enough to be believable.
const CAPACITY: u64 = 1 << 30;

enum Kind {
    File {
        data: Vec<u8>,
        /// The bytes as of the last fsync (`None`: never synced, so empty after a power loss).
        durable: Option<Vec<u8>>,
    },
    Dir {
        entries: BTreeMap<OsString, u64>,
        /// The entries as of the last fsync of the directory.
        durable: BTreeMap<OsString, u64>,
    },
}

struct Node {
    kind: Kind,
    mode: u16,
    mtime: SystemTime,
}

impl Node {
    fn dir(mode: u16) -> Node {
        Node {
            kind: Kind::Dir {
                entries: BTreeMap::new(),
                durable: BTreeMap::new(),
            },
            mode,
            mtime: SystemTime::now(),
        }
    }
}

#[derive(Default)]
struct Tree {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    /// Fsyncs of files whose name contains this fail with EIO (and sync nothing).
    fail_fsync_matching: Option<String>,
    /// File names by inode, for matching fsync failures.
    names: HashMap<u64, OsString>,
    fsyncs: u64,
    failed_fsyncs: u64,
}

impl Tree {
    fn new() -> Tree {
        let mut t = Tree {
            next_ino: 2,
            ..Tree::default()
        };
        t.nodes.insert(1, Node::dir(0o755));
        t
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let n = self.nodes.get(&ino)?;
        let (kind, size) = match &n.kind {
            Kind::File { data, .. } => (FileType::RegularFile, data.len() as u64),
            Kind::Dir { entries, .. } => (FileType::Directory, entries.len() as u64),
        };
        Some(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: n.mtime,
            mtime: n.mtime,
            ctime: n.mtime,
            crtime: n.mtime,
            kind,
            perm: n.mode,
            nlink: if kind == FileType::Directory { 2 } else { 1 },
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    fn entries_mut(&mut self, dir: u64) -> Result<&mut BTreeMap<OsString, u64>, Errno> {
        match self.nodes.get_mut(&dir).map(|n| &mut n.kind) {
            Some(Kind::Dir { entries, .. }) => Ok(entries),
            Some(Kind::File { .. }) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn child(&mut self, dir: u64, name: &OsStr) -> Result<u64, Errno> {
        self.entries_mut(dir)?
            .get(name)
            .copied()
            .ok_or(Errno::ENOENT)
    }

    fn add(&mut self, dir: u64, name: &OsStr, node: Node) -> Result<u64, Errno> {
        if self.entries_mut(dir)?.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(ino, node);
        self.names.insert(ino, name.to_owned());
        self.entries_mut(dir)?.insert(name.to_owned(), ino);
        Ok(ino)
    }

    fn is_empty_dir(&self, ino: u64) -> bool {
        matches!(self.nodes.get(&ino).map(|n| &n.kind), Some(Kind::Dir { entries, .. }) if entries.is_empty())
    }

    fn file_mut(&mut self, ino: u64) -> Result<&mut Vec<u8>, Errno> {
        match self.nodes.get_mut(&ino).map(|n| &mut n.kind) {
            Some(Kind::File { data, .. }) => Ok(data),
            Some(Kind::Dir { .. }) => Err(Errno::EISDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn fsync(&mut self, ino: u64) -> Result<(), Errno> {
        self.fsyncs += 1;
        let failing = match (&self.fail_fsync_matching, self.names.get(&ino)) {
            (Some(pattern), Some(name)) => name.to_string_lossy().contains(pattern.as_str()),
            _ => false,
        };
        if failing {
            self.failed_fsyncs += 1;
            return Err(Errno::EIO);
        }
        match self.nodes.get_mut(&ino).map(|n| &mut n.kind) {
            Some(Kind::File { data, durable }) => *durable = Some(data.clone()),
            Some(Kind::Dir { entries, durable }) => *durable = entries.clone(),
            None => return Err(Errno::ENOENT),
        }
        Ok(())
    }

    /// What a disk would hold after losing power now: durable entries and durable bytes only.
    fn after_power_loss(&self) -> Tree {
        let mut out = Tree::new();
        out.fail_fsync_matching = self.fail_fsync_matching.clone();
        let mut pending = vec![(1u64, 1u64)];
        while let Some((old, new)) = pending.pop() {
            let Some(Node {
                kind: Kind::Dir { durable, .. },
                ..
            }) = self.nodes.get(&old)
            else {
                continue;
            };
            for (name, child) in durable {
                let Some(node) = self.nodes.get(child) else {
                    continue;
                };
                let kept = match &node.kind {
                    Kind::File { durable, .. } => {
                        let bytes = durable.clone().unwrap_or_default();
                        Node {
                            kind: Kind::File {
                                data: bytes.clone(),
                                durable: Some(bytes),
                            },
                            mode: node.mode,
                            mtime: node.mtime,
                        }
                    }
                    Kind::Dir { .. } => Node::dir(node.mode),
                };
                let is_dir = matches!(kept.kind, Kind::Dir { .. });
                if let Ok(ino) = out.add(new, name, kept) {
                    if is_dir {
                        pending.push((*child, ino));
                    }
                }
            }
            // What survived is, by definition, durable.
            if let Some(Node {
                kind: Kind::Dir { entries, durable },
                ..
            }) = out.nodes.get_mut(&new)
            {
                *durable = entries.clone();
            }
        }
        out
    }
}

struct Fs(Arc<Mutex<Tree>>);

fn reply_attr(tree: &Tree, ino: u64, reply: ReplyAttr) {
    match tree.attr(ino) {
        Some(a) => reply.attr(&TTL, &a),
        None => reply.error(Errno::ENOENT),
    }
}

fn reply_entry(tree: &Tree, ino: Result<u64, Errno>, reply: ReplyEntry) {
    match ino.map(|i| tree.attr(i)) {
        Ok(Some(a)) => reply.entry(&TTL, &a, Generation(0)),
        Ok(None) => reply.error(Errno::ENOENT),
        Err(e) => reply.error(e),
    }
}

fn done(result: Result<(), Errno>, reply: ReplyEmpty) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

impl Filesystem for Fs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut t = self.0.lock();
        let ino = t.child(parent.0, name);
        reply_entry(&t, ino, reply);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        reply_attr(&self.0.lock(), ino.0, reply);
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut t = self.0.lock();
        if let Some(size) = size {
            match t.file_mut(ino.0) {
                Ok(data) => data.resize(size as usize, 0),
                Err(e) => return reply.error(e),
            }
        }
        if let Some(node) = t.nodes.get_mut(&ino.0) {
            if let Some(mode) = mode {
                node.mode = (mode & 0o7777) as u16;
            }
            node.mtime = SystemTime::now();
        }
        reply_attr(&t, ino.0, reply);
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let mut t = self.0.lock();
        let ino = t.add(parent.0, name, Node::dir((mode & 0o7777) as u16));
        reply_entry(&t, ino, reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut t = self.0.lock();
        let result = t
            .entries_mut(parent.0)
            .and_then(|e| e.remove(name).map(drop).ok_or(Errno::ENOENT));
        done(result, reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut t = self.0.lock();
        let result = t.child(parent.0, name).and_then(|ino| {
            if !t.is_empty_dir(ino) {
                return Err(Errno::ENOTEMPTY);
            }
            t.entries_mut(parent.0)?.remove(name);
            Ok(())
        });
        done(result, reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut t = self.0.lock();
        let result = (|| {
            let ino = t.child(parent.0, name)?;
            if let Ok(existing) = t.child(newparent.0, newname) {
                if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                    return Err(Errno::EEXIST);
                }
                let existing_is_dir = matches!(
                    t.nodes.get(&existing).map(|n| &n.kind),
                    Some(Kind::Dir { .. })
                );
                if existing_is_dir && !t.is_empty_dir(existing) {
                    return Err(Errno::ENOTEMPTY);
                }
            }
            t.entries_mut(parent.0)?.remove(name);
            t.entries_mut(newparent.0)?.insert(newname.to_owned(), ino);
            t.names.insert(ino, newname.to_owned());
            Ok(())
        })();
        done(result, reply);
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(0), FopenFlags::empty());
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut t = self.0.lock();
        match t.file_mut(ino.0) {
            Ok(data) => {
                let from = (offset as usize).min(data.len());
                let to = (from + size as usize).min(data.len());
                reply.data(data.get(from..to).unwrap_or_default());
            }
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        bytes: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut t = self.0.lock();
        match t.file_mut(ino.0) {
            Ok(data) => {
                let end = offset as usize + bytes.len();
                if data.len() < end {
                    data.resize(end, 0);
                }
                if let Some(slot) = data.get_mut(offset as usize..end) {
                    slot.copy_from_slice(bytes);
                }
                reply.written(bytes.len() as u32);
            }
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        done(self.0.lock().fsync(ino.0), reply);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut t = self.0.lock();
        let listing: Vec<(u64, OsString)> = match t.entries_mut(ino.0) {
            Ok(e) => e.iter().map(|(n, i)| (*i, n.clone())).collect(),
            Err(e) => return reply.error(e),
        };
        let mut all = vec![
            (ino.0, FileType::Directory, OsString::from(".")),
            (1, FileType::Directory, OsString::from("..")),
        ];
        for (child, name) in listing {
            let kind = match t.nodes.get(&child).map(|n| &n.kind) {
                Some(Kind::Dir { .. }) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            all.push((child, kind, name));
        }
        for (i, (child, kind, name)) in all.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), (i + 1) as u64, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        done(self.0.lock().fsync(ino.0), reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let t = self.0.lock();
        let used: u64 = t
            .nodes
            .values()
            .map(|n| match &n.kind {
                Kind::File { data, .. } => data.len() as u64,
                Kind::Dir { .. } => 0,
            })
            .sum();
        let free = CAPACITY.saturating_sub(used) / 4096;
        reply.statfs(
            CAPACITY / 4096,
            free,
            free,
            1 << 20,
            1 << 20,
            4096,
            255,
            4096,
        );
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mut t = self.0.lock();
        let node = Node {
            kind: Kind::File {
                data: Vec::new(),
                durable: None,
            },
            mode: (mode & 0o7777) as u16,
            mtime: SystemTime::now(),
        };
        match t.add(parent.0, name, node).map(|i| t.attr(i)) {
            Ok(Some(a)) => {
                reply.created(&TTL, &a, Generation(0), FileHandle(0), FopenFlags::empty())
            }
            Ok(None) => reply.error(Errno::ENOENT),
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        const KEEP_SIZE: i32 = 1;
        let mut t = self.0.lock();
        let result = t.file_mut(ino.0).and_then(|data| match mode {
            0 => {
                let end = (offset + length) as usize;
                if data.len() < end {
                    data.resize(end, 0);
                }
                Ok(())
            }
            KEEP_SIZE => Ok(()),
            _ => Err(Errno::EOPNOTSUPP),
        });
        done(result, reply);
    }
}

/// A mounted fault filesystem; unmounted on drop.
pub struct FaultFs {
    mountpoint: PathBuf,
    tree: Arc<Mutex<Tree>>,
    session: Option<BackgroundSession>,
}

/// Counters of what the filesystem was asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsStats {
    /// Fsyncs of files and directories, failed ones included.
    pub fsyncs: u64,
    /// Fsyncs that failed because [`FaultFs::fail_fsyncs`] asked for it.
    pub failed_fsyncs: u64,
}

impl FaultFs {
    /// Mounts an empty filesystem on `mountpoint` (an existing, empty directory). Needs root (or
    /// a FUSE set-up that lets this user mount).
    pub fn mount(mountpoint: &Path) -> std::io::Result<FaultFs> {
        let mut fs = FaultFs {
            mountpoint: mountpoint.to_owned(),
            tree: Arc::new(Mutex::new(Tree::new())),
            session: None,
        };
        fs.start()?;
        Ok(fs)
    }

    fn start(&mut self) -> std::io::Result<()> {
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("eddy-faultfs".into()),
            MountOption::RW,
            MountOption::DefaultPermissions,
        ];
        let session = fuser::spawn_mount(Fs(Arc::clone(&self.tree)), &self.mountpoint, &config)?;
        self.session = Some(session);
        Ok(())
    }

    /// Where the filesystem is mounted.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// From now on, fsyncs of files whose name contains `pattern` fail with `EIO` and make
    /// nothing durable; `None` ends the failures.
    pub fn fail_fsyncs(&self, pattern: Option<&str>) {
        self.tree.lock().fail_fsync_matching = pattern.map(str::to_owned);
    }

    /// What the filesystem has been asked to do so far.
    pub fn stats(&self) -> FsStats {
        let t = self.tree.lock();
        FsStats {
            fsyncs: t.fsyncs,
            failed_fsyncs: t.failed_fsyncs,
        }
    }

    /// Simulates a power loss: unmounts, keeps only what was fsynced (file bytes as of their
    /// last fsync, directory entries as of their directory's last fsync) and mounts that. Every
    /// process using the mount must have exited first.
    pub fn power_loss(&mut self) -> std::io::Result<()> {
        if let Some(session) = self.session.take() {
            unmount(session)?;
        }
        let survivor = self.tree.lock().after_power_loss();
        *self.tree.lock() = survivor;
        self.start()
    }
}

impl Drop for FaultFs {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let _ = unmount(session);
        }
    }
}

/// Unmounts and waits for the session's thread. The kernel may end the connection with
/// `ECONNABORTED` instead of `ENODEV` when it goes down with requests still queued (seen on busy
/// machines); the filesystem is unmounted either way, and the queued requests are simply never
/// carried out, as in a real power loss.
fn unmount(session: BackgroundSession) -> std::io::Result<()> {
    match session.umount_and_join() {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => Ok(()),
        other => other,
    }
}
