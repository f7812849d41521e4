//! Fuzz target: see `eddy::fuzzing::tail_file`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| eddy::fuzzing::tail_file(data));
