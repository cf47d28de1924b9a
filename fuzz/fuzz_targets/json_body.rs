#![no_main]
//! `sluice::fuzz::json_body`: see its documentation.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice::fuzz::json_body(data));
