#![no_main]
//! `sluice::fuzz::statsd`: see its documentation.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice::fuzz::statsd(data));
