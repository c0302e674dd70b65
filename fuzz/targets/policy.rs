//! Fuzz target: the policy file parser (and its renderer, round trip).
//! The check is `lpm_formats::fuzz::policy`, which the corpus replay test runs too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lpm_formats::fuzz::policy(data));
