#![no_main]
//! `sluice::fuzz::filter`: see its documentation.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice::fuzz::filter(data));
