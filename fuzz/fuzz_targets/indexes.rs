//! Fuzz target: see `eddy::fuzzing::indexes`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| eddy::fuzzing::indexes(data));
