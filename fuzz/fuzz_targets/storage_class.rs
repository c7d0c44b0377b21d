#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rwxnfs_fuzzing::storage_class(data));
