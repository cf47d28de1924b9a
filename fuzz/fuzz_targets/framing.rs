#![no_main]
//! `sluice::fuzz::framing`: see its documentation.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice::fuzz::framing(data));
