//! Fuzz target: `cimc::fuzz_entry::noise_toml` (docs/fuzzing.md).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = cimc::fuzz_entry::noise_toml(data);
});
