//! Fuzz target: the fleet file parser.
//! The check is `lpm_formats::fuzz::fleet`, which the corpus replay test runs too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lpm_formats::fuzz::fleet(data));
