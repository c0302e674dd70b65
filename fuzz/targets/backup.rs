//! Fuzz target: the backup manifest and HVM configuration document checks of a restore.
//! The check is `lpm_formats::fuzz::backup`, which the corpus replay test runs too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lpm_formats::fuzz::backup(data));
