//! Fuzz target: see `eddy::fuzzing::user_input`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| eddy::fuzzing::user_input(data));
