//! Fuzz target: the LPAR Mover wire decoder (a stream of frames; decode → encode → decode).
//! The check is `lpm_formats::fuzz::wire`, which the corpus replay test runs too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lpm_formats::fuzz::wire(data));
