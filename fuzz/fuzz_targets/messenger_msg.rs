#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| skywire_fuzz::messenger_msg(data));
