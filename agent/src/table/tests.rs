use super::*;

fn name(raw: &str) -> Name {
    Name::parse(raw).unwrap()
}

fn record(name: &str, export_id: u32) -> ExportRecord {
    ExportRecord {
        name: self::name(name),
        export_id,
        state: RecordState::Ready,
        path: PathBuf::from("volumes").join(name),
        pseudo_path: format!("/{name}"),
        capacity_bytes: 1 << 30,
        quota_enforced: true,
        clients: vec![ClientRecord {
            client_id: "node-a".into(),
            addresses: vec!["10.0.0.1".parse().unwrap()],
            access: Access::Rw,
        }],
        options: OptionsRecord {
            squash: Squash::Root,
            uid: 0,
            gid: 0,
            mode: 0o2775,
            allowed_clients: vec![],
            on_delete: OnDelete::Delete,
            transport: rwxnfs_model::Transport::None,
        },
        source: None,
        created_unix_ms: 1,
        updated_unix_ms: 1,
    }
}

#[test]
fn records_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let table = Table::open(dir.path()).unwrap();
    table.put_export(&record("b", 101)).unwrap();
    table.put_export(&record("a", 100)).unwrap();

    let reopened = Table::open(dir.path()).unwrap();
    let names: Vec<String> = reopened
        .exports()
        .unwrap()
        .into_iter()
        .map(|r| r.name.to_string())
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(reopened.export(&name("a")).unwrap(), Some(record("a", 100)));
    assert_eq!(reopened.export(&name("missing")).unwrap(), None);
}

#[test]
fn removing_a_missing_record_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let table = Table::open(dir.path()).unwrap();
    table.remove_export(&name("never-there")).unwrap();
    table.put_export(&record("x", 100)).unwrap();
    table.remove_export(&name("x")).unwrap();
    assert_eq!(table.export(&name("x")).unwrap(), None);
}

#[test]
fn export_ids_are_monotonic_and_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let table = Table::open(dir.path()).unwrap();
    let a = table.allocate_export_id().unwrap();
    let b = table.allocate_export_id().unwrap();
    assert_eq!((a, b), (FIRST_EXPORT_ID, FIRST_EXPORT_ID + 1));
    // Deleting an export does not give its id back.
    let reopened = Table::open(dir.path()).unwrap();
    assert_eq!(reopened.allocate_export_id().unwrap(), FIRST_EXPORT_ID + 2);
}

#[test]
fn reserved_ids_are_skipped_after_a_restart_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let table = Table::open(dir.path()).unwrap();
    let block = table.reserve_export_ids(32).unwrap();
    assert_eq!(block, FIRST_EXPORT_ID..FIRST_EXPORT_ID + 32);
    // A crash after using only some of the block: the next agent starts after all of it.
    let reopened = Table::open(dir.path()).unwrap();
    assert_eq!(reopened.allocate_export_id().unwrap(), FIRST_EXPORT_ID + 32);
}

#[test]
fn a_lost_counter_continues_after_the_highest_recorded_id() {
    let dir = tempfile::tempdir().unwrap();
    let table = Table::open(dir.path()).unwrap();
    table.put_export(&record("a", 500)).unwrap();
    assert_eq!(table.allocate_export_id().unwrap(), 501);
}

#[test]
fn a_half_written_temporary_file_is_ignored_and_cleaned_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let table = Table::open(dir.path()).unwrap();
    table.put_export(&record("a", 100)).unwrap();
    let tmp = dir.path().join("exports/.a.json.123-0.tmp");
    std::fs::write(&tmp, b"{\"name\": \"a\", \"exp").unwrap();

    assert_eq!(table.exports().unwrap(), vec![record("a", 100)]);
    assert!(
        tmp.exists(),
        "while running, a temporary may be another write in flight"
    );
    let reopened = Table::open(dir.path()).unwrap();
    assert_eq!(reopened.exports().unwrap(), vec![record("a", 100)]);
    assert!(!tmp.exists());
}

/// The export names a table opened anew over `dir` reads, in its order.
fn names_after_reopen(dir: &Path) -> Vec<String> {
    Table::open(dir)
        .unwrap()
        .exports()
        .unwrap()
        .into_iter()
        .map(|r| r.name.to_string())
        .collect()
}

#[test]
fn a_large_table_is_read_whole_in_name_order_and_a_corrupt_record_anywhere_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let table = Table::open(dir.path()).unwrap();
    for i in 0..1_300u32 {
        table
            .put_export(&record(&format!("v{i:04}"), 100 + i))
            .unwrap();
    }
    let names = names_after_reopen(dir.path());
    let expected: Vec<String> = (0..1_300).map(|i| format!("v{i:04}")).collect();
    assert_eq!(names, expected);
    std::fs::write(dir.path().join("exports/v1299x.json"), b"not json").unwrap();
    let err = Table::open(dir.path())
        .unwrap()
        .exports()
        .unwrap_err()
        .to_string();
    assert!(err.contains("v1299x.json"), "{err}");
}

#[test]
fn a_corrupt_record_is_reported_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let table = Table::open(dir.path()).unwrap();
    std::fs::write(dir.path().join("exports/bad.json"), b"not json").unwrap();
    let err = table.exports().unwrap_err().to_string();
    assert!(err.contains("bad.json"), "{err}");
}

/// The format as the agent has always written it (a name is a plain string): state
/// directories from before names were typed load unchanged, and are written back the same.
const RECORD_ON_DISK: &str = r#"{
  "name": "a",
  "export_id": 100,
  "state": "ready",
  "path": "volumes/a",
  "pseudo_path": "/a",
  "capacity_bytes": 1073741824,
  "quota_enforced": true,
  "clients": [
    {
      "client_id": "node-a",
      "addresses": [
        "10.0.0.1"
      ],
      "access": "rw"
    }
  ],
  "options": {
    "squash": "root",
    "uid": 0,
    "gid": 0,
    "mode": 1533,
    "allowed_clients": [],
    "on_delete": "delete"
  },
  "source": null,
  "created_unix_ms": 1,
  "updated_unix_ms": 1
}
"#;

#[test]
fn a_record_in_the_existing_format_loads_and_is_written_back_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let table = Table::open(dir.path()).unwrap();
    let path = dir.path().join("exports/a.json");
    std::fs::write(&path, RECORD_ON_DISK).unwrap();
    assert_eq!(table.export(&name("a")).unwrap(), Some(record("a", 100)));

    table.put_export(&record("a", 100)).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), RECORD_ON_DISK);
}

#[test]
fn a_record_with_an_invalid_name_is_reported_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let table = Table::open(dir.path()).unwrap();
    let edited = RECORD_ON_DISK.replace(r#""name": "a""#, r#""name": "../escape""#);
    std::fs::write(dir.path().join("exports/a.json"), edited).unwrap();
    for err in [
        table.export(&name("a")).unwrap_err(),
        table.exports().unwrap_err(),
    ] {
        assert!(matches!(err, TableError::Corrupt { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("exports/a.json"), "{message}");
        assert!(message.contains("../escape"), "{message}");
    }
}

#[test]
fn snapshot_records_keep_their_format_and_an_invalid_name_is_reported_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let table = Table::open(dir.path()).unwrap();
    let on_disk = "{\n  \"name\": \"s1\",\n  \"source_export\": \"a\",\n  \"state\": \"ready\",\n  \
                   \"path\": \"snapshots/s1\",\n  \"size_bytes\": 4096,\n  \"created_unix_ms\": 1\n}\n";
    let path = dir.path().join("snapshots/s1.json");
    std::fs::write(&path, on_disk).unwrap();
    let record = table.snapshot(&name("s1")).unwrap().unwrap();
    assert_eq!(record.name, name("s1"));
    table.put_snapshot(&record).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), on_disk);

    std::fs::write(&path, on_disk.replace("\"s1\"", "\".hidden\"")).unwrap();
    let err = table.snapshots().unwrap_err();
    assert!(matches!(err, TableError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("snapshots/s1.json"), "{err}");
}

#[test]
fn records_come_in_name_order_so_pages_by_name_skip_none() {
    // "a-b.json" sorts before "a.json", but the name "a" before "a-b".
    let dir = tempfile::tempdir().unwrap();
    let table = Table::open(dir.path()).unwrap();
    for n in ["a-b", "a", "b"] {
        table.put_export(&record(n, 100)).unwrap();
    }
    let names = names_after_reopen(dir.path());
    assert_eq!(names, ["a", "a-b", "b"]);
}

#[test]
fn once_read_whole_the_table_answers_from_memory_and_writes_reach_both() {
    let dir = tempfile::tempdir().unwrap();
    let table = Table::open(dir.path()).unwrap();
    table.put_export(&record("a", 100)).unwrap();
    table.load().unwrap();
    table.put_export(&record("b", 101)).unwrap();
    table.remove_export(&name("a")).unwrap();
    let on_disk = Table::open(dir.path()).unwrap().exports().unwrap();
    assert_eq!(on_disk, vec![record("b", 101)], "writes reach the disk");

    // The directory gone (as when its filesystem fails): reads are still answered.
    std::fs::rename(dir.path().join("exports"), dir.path().join("gone")).unwrap();
    assert_eq!(table.exports().unwrap(), vec![record("b", 101)]);
    assert_eq!(table.export(&name("b")).unwrap(), Some(record("b", 101)));
    assert_eq!(table.export(&name("a")).unwrap(), None);
    let err = table.put_export(&record("c", 102)).unwrap_err();
    assert!(err.to_string().contains("c.json"), "{err}");
    assert_eq!(
        table.export(&name("c")).unwrap(),
        None,
        "a failed write changes nothing"
    );
}

#[test]
fn full_and_read_only_filesystems_are_told_apart_from_other_failures() {
    let full = TableError::io("x".into(), io::Error::from_raw_os_error(libc::ENOSPC));
    assert!(matches!(full, TableError::NoSpace { .. }), "{full:?}");
    let quota = TableError::io("x".into(), io::Error::from_raw_os_error(libc::EDQUOT));
    assert!(matches!(quota, TableError::NoSpace { .. }), "{quota:?}");
    for errno in [libc::EROFS, libc::EIO] {
        let err = TableError::io("x".into(), io::Error::from_raw_os_error(errno));
        assert!(matches!(err, TableError::Unwritable { .. }), "{err:?}");
    }
    let other = TableError::io("x".into(), io::Error::from_raw_os_error(libc::EACCES));
    assert!(matches!(other, TableError::Io { .. }), "{other:?}");
    // The kind alone (an error rewrapped with a message) still tells.
    let rewrapped = io::Error::new(
        io::Error::from_raw_os_error(libc::ENOSPC).kind(),
        "writing x: no space",
    );
    assert_eq!(Failure::of(&rewrapped), Failure::NoSpace);
}

#[test]
fn leftover_temporaries_of_one_file_go_and_other_files_stay() {
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join(".rwxnfs.exports.77-3.tmp");
    let theirs = dir.path().join(".other.exports.77-3.tmp");
    let file = dir.path().join("rwxnfs.exports");
    for path in [&ours, &theirs, &file] {
        std::fs::write(path, b"x").unwrap();
    }
    remove_leftover_temporaries(dir.path(), "rwxnfs.exports.");
    assert!(!ours.exists());
    assert!(theirs.exists() && file.exists());
}

/// How a fresh table of `dir` reads its exports.
fn load_after_reopen(dir: &Path) -> (Vec<ExportRecord>, image::Loaded) {
    let (records, loaded) = Table::open(dir).unwrap().exports.all().unwrap();
    (records, loaded.unwrap())
}

#[test]
fn a_start_takes_unchanged_records_from_the_image_and_reads_the_rest_from_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let table = Table::open(dir.path()).unwrap();
    table.load().unwrap();
    for (n, id) in [("a", 100), ("b", 101), ("c", 102), ("e", 104)] {
        table.put_export(&record(n, id)).unwrap();
    }
    assert!(table.write_images().unwrap());
    assert!(!table.write_images().unwrap(), "nothing changed since");
    let (records, loaded) = load_after_reopen(dir.path());
    assert_eq!(records.len(), 4);
    assert_eq!((loaded.from_image, loaded.from_files), (4, 0));

    // After the image: one record rewritten, one removed, one added, one edited in place
    // by hand (same inode; a different size, so the test does not depend on the clock's
    // resolution).
    let mut b = record("b", 101);
    b.capacity_bytes = 2 << 30;
    table.put_export(&b).unwrap();
    table.remove_export(&name("c")).unwrap();
    table.put_export(&record("d", 103)).unwrap();
    let mut a = record("a", 100);
    a.pseudo_path = "/edited-by-hand".into();
    let a_path = dir.path().join("exports/a.json");
    let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&a_path).unwrap());
    std::fs::write(&a_path, serde_json::to_vec(&a).unwrap()).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&a_path).unwrap()),
        inode
    );

    let (records, loaded) = load_after_reopen(dir.path());
    assert_eq!(records, vec![a, b, record("d", 103), record("e", 104)]);
    assert_eq!(
        (loaded.from_image, loaded.from_files, loaded.dropped),
        (1, 3, 1)
    );
}

#[test]
fn a_stale_missing_or_unreadable_image_costs_a_full_read_and_is_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let table = Table::open(dir.path()).unwrap();
    for (n, id) in [("a", 100), ("b", 101)] {
        table.put_export(&record(n, id)).unwrap();
    }
    let image = dir.path().join("exports.image");
    for garbage in [
        &b"{\"version\": 1, \"rec"[..],
        b"{\"version\": 99, \"records\": []}",
    ] {
        std::fs::write(&image, garbage).unwrap();
        let (records, loaded) = load_after_reopen(dir.path());
        assert_eq!(records, vec![record("a", 100), record("b", 101)]);
        assert_eq!((loaded.from_image, loaded.from_files), (0, 2));
    }

    // A start that found the image stale writes it at the next chance, and the start after
    // that reads it.
    let started = Table::open(dir.path()).unwrap();
    started.load().unwrap();
    assert!(started.write_images().unwrap());
    let (_, loaded) = load_after_reopen(dir.path());
    assert_eq!((loaded.from_image, loaded.from_files), (2, 0));
    let current = Table::open(dir.path()).unwrap();
    current.load().unwrap();
    assert!(!current.write_images().unwrap(), "the image was current");

    // A table never read whole has nothing to write, and a temporary a crash left goes.
    let leftover = dir.path().join(".exports.image.77-3.tmp");
    std::fs::write(&leftover, b"{").unwrap();
    let unread = Table::open(dir.path()).unwrap();
    assert!(!leftover.exists());
    unread.put_export(&record("c", 102)).unwrap();
    unread.write_images().unwrap();
    let (_, loaded) = load_after_reopen(dir.path());
    assert_eq!((loaded.from_image, loaded.from_files), (2, 1));
}
