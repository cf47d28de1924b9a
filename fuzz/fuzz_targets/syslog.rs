#![no_main]
//! `sluice::fuzz::syslog`: see its documentation.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice::fuzz::syslog(data));
