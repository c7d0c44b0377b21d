//! The btrfs export root on a real, loop-mounted btrfs with quotas: a write past a volume's
//! size fails with EDQUOT, an expansion lifts the limit online, snapshots are subvolume
//! snapshots, and deleted volumes are destroyed.
#![allow(clippy::unwrap_used)]

use std::{io::Write, path::Path};

use rwxnfs_agent::fs::{
    CloneMethod, Ownership, QuotaKind, RelPath, VolumeFs, btrfs::BtrfsFs, open_root,
};
use rwxnfs_model::Name;
use rwxnfs_testbed::{LoopFs, loopfs_run as run};

/// A loop-mounted btrfs with quotas enabled.
fn btrfs(size_mb: u64) -> LoopFs {
    let fs = LoopFs::new("btrfs", size_mb, &["-q"]);
    run("btrfs", &["quota", "enable", &fs.mount.to_string_lossy()]);
    fs
}

fn vol(name: &str) -> RelPath {
    RelPath::volume(&Name::parse(name).unwrap())
}

/// Writes `mb` MiB into `path` with fsync; returns the first error.
fn write_mb(path: &Path, mb: usize) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    let chunk = vec![0x5au8; 1 << 20];
    for _ in 0..mb {
        f.write_all(&chunk)?;
    }
    f.sync_all()
}

#[test]
fn quotas_are_enforced_expansions_lift_them_and_snapshots_are_instant() {
    let loopfs = btrfs(512);
    let fs = BtrfsFs::open(&loopfs.mount).unwrap();
    assert_eq!(fs.quota_kind(), QuotaKind::Btrfs);
    let owner = Ownership {
        uid: 0,
        gid: 0,
        mode: 0o777,
    };
    fs.create_volume(&vol("q"), owner).unwrap();
    fs.create_volume(&vol("q"), owner).unwrap();
    assert_eq!(fs.set_limit(&vol("q"), 1, 16 << 20).unwrap(), 16 << 20);

    let file = loopfs.mount.join("volumes/q/big");
    let err = write_mb(&file, 24).expect_err("a 24 MiB write into a 16 MiB volume must fail");
    assert_eq!(err.raw_os_error(), Some(libc::EDQUOT), "{err}");
    std::fs::remove_file(&file).unwrap();
    std::process::Command::new("sync").status().unwrap();

    fs.set_limit(&vol("q"), 1, 64 << 20).unwrap();
    write_mb(&file, 24).expect("after expansion the same write fits");

    let started = std::time::Instant::now();
    let snap = RelPath::snapshot(&Name::parse("s1").unwrap());
    assert_eq!(
        fs.clone_tree(&vol("q"), &snap).unwrap(),
        CloneMethod::Snapshot
    );
    println!("btrfs snapshot of a 24 MiB volume: {:?}", started.elapsed());
    assert_eq!(
        std::fs::metadata(loopfs.mount.join("snapshots/s1/big"))
            .unwrap()
            .len(),
        24 << 20
    );

    let restored = vol("restored");
    assert_eq!(
        fs.clone_tree(&snap, &restored).unwrap(),
        CloneMethod::Snapshot
    );
    fs.set_limit(&restored, 2, 32 << 20).unwrap();

    for rel in [vol("q"), snap, restored] {
        fs.trash(&rel).unwrap();
    }
    assert_eq!(fs.purge_trash().unwrap(), 3);
    assert_eq!(
        std::fs::read_dir(loopfs.mount.join(".trash"))
            .unwrap()
            .count(),
        0
    );
}

/// What the qgroup counts once the transaction is committed (`sync`).
fn committed_usage(fs: &BtrfsFs, rel: &RelPath) -> u64 {
    std::process::Command::new("sync").status().unwrap();
    fs.used_bytes(rel, 1)
        .unwrap()
        .expect("a subvolume's usage is known")
}

#[test]
fn usage_is_the_qgroups_referenced_bytes() {
    let loopfs = btrfs(256);
    let fs = BtrfsFs::open(&loopfs.mount).unwrap();
    let owner = Ownership {
        uid: 0,
        gid: 0,
        mode: 0o777,
    };
    let q = vol("used");
    fs.create_volume(&q, owner).unwrap();
    fs.set_limit(&q, 1, 64 << 20).unwrap();
    let empty = committed_usage(&fs, &q);
    assert!(empty < 1 << 20, "an empty volume uses {empty} bytes");

    let file = loopfs.mount.join("volumes/used/data");
    write_mb(&file, 24).unwrap();
    let written = committed_usage(&fs, &q);
    assert!(
        (24 << 20..25 << 20).contains(&written),
        "24 MiB written, the qgroup says {written} bytes"
    );

    std::fs::remove_file(&file).unwrap();
    let emptied = committed_usage(&fs, &q);
    assert!(emptied < 1 << 20, "after the delete {emptied} bytes");

    let plain = loopfs.mount.join("volumes/plain-dir");
    std::fs::create_dir(&plain).unwrap();
    assert_eq!(
        fs.used_bytes(&vol("plain-dir"), 2).unwrap(),
        None,
        "a directory that is no subvolume has no qgroup of its own"
    );
}

#[test]
fn auto_detection_picks_btrfs_and_quota_none_stays_plain() {
    let loopfs = btrfs(256);
    assert_eq!(
        open_root(&loopfs.mount, None, false).unwrap().quota_kind(),
        QuotaKind::Btrfs
    );
    assert_eq!(
        open_root(&loopfs.mount, Some(QuotaKind::None), false)
            .unwrap()
            .quota_kind(),
        QuotaKind::None
    );
    let tmp = tempfile::tempdir().unwrap();
    assert!(
        open_root(tmp.path(), Some(QuotaKind::Btrfs), false).is_err(),
        "btrfs asked for on a non-btrfs root"
    );
}
