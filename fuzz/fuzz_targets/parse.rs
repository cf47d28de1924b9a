#![no_main]
//! `sluice::fuzz::parse`: see its documentation.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice::fuzz::parse(data));
