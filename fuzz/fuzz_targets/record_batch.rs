//! Fuzz target: see `eddy::fuzzing::record_batch`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| eddy::fuzzing::record_batch(data));
