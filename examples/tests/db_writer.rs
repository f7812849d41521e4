//! The reprocessing tutorial's database writer is effectively once: records the database already
//! includes (its own table of input offsets says so) are not applied again when the group's
//! commit lagged behind it, and a deliberate reset of the group is followed.
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use eddy::{Groups, Log, Record, TopicConfig, RESET_METADATA};
use eddy_examples::gps::{query, write_db, DistanceCalc, DISTANCES_TOPIC, WRITER_GROUP};

#[test]
fn the_db_writer_applies_each_record_once_and_follows_a_reset() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("d.db");
    let log = Log::open(dir.path()).unwrap();
    let topic = log
        .topic_or_create(DISTANCES_TOPIC, TopicConfig::default())
        .unwrap();
    topic
        .append((0..50u64).map(|i| {
            let d = DistanceCalc {
                id: i,
                track_id: i % 5,
                distance: i as f64,
            };
            Record::keyed((i % 5).to_string(), serde_json::to_vec(&d).unwrap())
        }))
        .unwrap();
    let run = || write_db(dir.path(), &db, true, Arc::new(AtomicBool::new(false))).unwrap();
    assert_eq!(run(), 50);
    let rows = query(&db).unwrap();
    assert_eq!(rows.len(), 5);

    // The group's commit 20 records behind the database's (a crash between the two commits).
    let groups = Groups::new(&log);
    groups
        .alter_offsets(WRITER_GROUP, &[(DISTANCES_TOPIC, 0, 30)], "")
        .unwrap();
    assert_eq!(run(), 0, "nothing applied twice");
    assert_eq!(query(&db).unwrap(), rows);

    // A reset of the group rewrites from there.
    groups
        .alter_offsets(WRITER_GROUP, &[(DISTANCES_TOPIC, 0, 10)], RESET_METADATA)
        .unwrap();
    assert_eq!(run(), 40);
    assert_eq!(query(&db).unwrap(), rows);
}
