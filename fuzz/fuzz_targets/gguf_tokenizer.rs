#![no_main]

#[allow(dead_code)]
#[path = "../../tests/fuzz_harness/mod.rs"]
mod fuzz_harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_harness::gguf_tokenizer(data));
