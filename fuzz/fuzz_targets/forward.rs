#![no_main]
//! `sluice::fuzz::forward`: see its documentation.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice::fuzz::forward(data));
