//! The fault filesystem keeps exactly what was fsynced across a power loss, and fails fsyncs on
//! demand.
#![allow(missing_docs, clippy::unwrap_used)]

use std::fs::{File, OpenOptions};
use std::io::Write;

use faultfs::FaultFs;

fn mounted() -> (tempfile::TempDir, FaultFs) {
    let dir = tempfile::tempdir().unwrap();
    let fs =
        FaultFs::mount(dir.path()).expect("mount the fault filesystem (needs root and /dev/fuse)");
    (dir, fs)
}

fn sync_dir(path: &std::path::Path) {
    File::open(path).unwrap().sync_all().unwrap();
}

#[test]
fn a_power_loss_keeps_synced_bytes_and_synced_names_only() {
    let (_dir, mut fs) = mounted();
    let root = fs.path().to_owned();
    let mut kept = File::create(root.join("kept")).unwrap();
    kept.write_all(b"durable").unwrap();
    kept.sync_all().unwrap();
    kept.write_all(b" and lost").unwrap();
    drop(kept);
    std::fs::create_dir(root.join("sub")).unwrap();
    sync_dir(&root);
    std::fs::write(root.join("sub/unsynced-name"), b"x").unwrap();
    let f = File::open(root.join("sub/unsynced-name")).unwrap();
    f.sync_all().unwrap();
    std::fs::write(root.join("never-synced"), b"y").unwrap();
    // A rename is durable only once its directory is synced.
    std::fs::write(root.join("renamed.tmp"), b"new").unwrap();
    File::open(root.join("renamed.tmp"))
        .unwrap()
        .sync_all()
        .unwrap();
    sync_dir(&root);
    std::fs::rename(root.join("renamed.tmp"), root.join("renamed")).unwrap();
    drop(f);

    fs.power_loss().unwrap();
    assert_eq!(std::fs::read(root.join("kept")).unwrap(), b"durable");
    assert!(root.join("sub").is_dir());
    assert!(!root.join("sub/unsynced-name").exists());
    // Its name was made durable by the directory sync below, its bytes never were.
    assert_eq!(std::fs::read(root.join("never-synced")).unwrap(), b"");
    assert!(!root.join("renamed").exists());
    assert_eq!(std::fs::read(root.join("renamed.tmp")).unwrap(), b"new");
}

#[test]
fn failing_fsyncs_return_eio_and_make_nothing_durable() {
    let (_dir, mut fs) = mounted();
    let root = fs.path().to_owned();
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(root.join("data.log"))
        .unwrap();
    f.write_all(b"one").unwrap();
    f.sync_data().unwrap();
    sync_dir(&root);
    fs.fail_fsyncs(Some(".log"));
    f.write_all(b"two").unwrap();
    let err = f.sync_data().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(5), "{err}");
    assert_eq!(fs.stats().failed_fsyncs, 1);
    drop(f);
    fs.fail_fsyncs(None);
    fs.power_loss().unwrap();
    assert_eq!(std::fs::read(root.join("data.log")).unwrap(), b"one");
}
