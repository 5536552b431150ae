//! Fuzz target: `cimc::fuzz_entry::npz` (docs/fuzzing.md).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = cimc::fuzz_entry::npz(data);
});
