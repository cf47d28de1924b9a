#![no_main]
//! `sluice::fuzz::fluent`: see its documentation.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice::fuzz::fluent(data));
