#![no_main]
//! `sluice::fuzz::config`: see its documentation.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice::fuzz::config(data));
