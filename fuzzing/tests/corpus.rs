//! Replays the checked-in fuzz corpus (`fuzz/corpus/<target>/`, minimised with `cargo fuzz
//! cmin`, crash reproducers included) through the fuzz targets' bodies, so that the normal
//! test run fails on a regression the fuzzer once found. A missing or empty corpus directory
//! fails: it would otherwise pass by testing nothing.

use std::path::{Path, PathBuf};

fn replay(target: &str, body: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the corpus of {target}, {}: {e}", dir.display()))
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
    files.retain(|f| f.is_file());
    files.sort();
    assert!(
        !files.is_empty(),
        "the corpus of {target}, {}, is empty",
        dir.display()
    );
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        // The file's name in the failure says which input to run again with cargo fuzz.
        if let Err(panic) = std::panic::catch_unwind(|| body(&data)) {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            panic!("{target}: {} fails: {message}", file.display());
        }
    }
}

macro_rules! replays {
    ($($target:ident),* $(,)?) => {$(
        #[test]
        fn $target() {
            replay(stringify!($target), rwxnfs_fuzzing::$target);
        }
    )*};
}

replays!(
    mount_options,
    storage_class,
    ids,
    mountinfo,
    exportfs,
    agent_config,
    controller_config,
    doctor_manifests,
    agent_api,
);
