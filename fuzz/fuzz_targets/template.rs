#![no_main]
//! `sluice::fuzz::template`: see its documentation.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice::fuzz::template(data));
