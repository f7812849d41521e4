//! Fuzz target: see `eddy::fuzzing::window_state`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| eddy::fuzzing::window_state(data));
