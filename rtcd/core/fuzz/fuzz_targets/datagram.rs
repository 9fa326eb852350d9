//! Datagrams into rtcd-core's SFU: see the harness (src/lib.rs) for the
//! input format and what must hold.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rtcd_core_fuzz::run(data));
