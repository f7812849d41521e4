//! Fuzz target: see `eddy::fuzzing::offsets_file`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| eddy::fuzzing::offsets_file(data));
