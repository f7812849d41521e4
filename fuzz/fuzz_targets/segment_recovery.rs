//! Fuzz target: see `eddy::fuzzing::segment_recovery`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| eddy::fuzzing::segment_recovery(data));
