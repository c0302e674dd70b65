//! Fuzz target: the receiver's state machine (a sequence of inputs, checked against a model).
//! The check is `lpm_formats::fuzz::receiver`, which the corpus replay test runs too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lpm_formats::fuzz::receiver(data));
