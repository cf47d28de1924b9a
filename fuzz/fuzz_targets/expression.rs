#![no_main]
//! `sluice::fuzz::expression`: see its documentation.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice::fuzz::expression(data));
