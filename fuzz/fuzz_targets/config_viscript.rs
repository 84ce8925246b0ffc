#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| skywire_fuzz::config_viscript(data));
