#![no_main]
//! `sluice::fuzz::hec`: see its documentation.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice::fuzz::hec(data));
