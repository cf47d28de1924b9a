#![no_main]
//! `sluice::fuzz::backstop`: see its documentation.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice::fuzz::backstop(data));
