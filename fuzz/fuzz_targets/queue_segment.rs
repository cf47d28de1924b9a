#![no_main]
//! `sluice::fuzz::queue_segment`: see its documentation.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice::fuzz::queue_segment(data));
