//! Fuzz target: see `eddy::fuzzing::txn_files`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| eddy::fuzzing::txn_files(data));
