#![no_main]

#[allow(dead_code)]
const CERTS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../certs");

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::read_buf(data));
