#![no_main]
//! `sluice::fuzz::otlp_protobuf`: see its documentation.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice::fuzz::otlp_protobuf(data));
