//! Fuzz target: the identifier parsers (WWPN, WWNN, MAC, LPAR number and name, firmware
//! version, ports, cables, modes, job tickets).
//! The check is `lpm_formats::fuzz::ids`, which the corpus replay test runs too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lpm_formats::fuzz::ids(data));
