//! Clones and snapshots on a real, loop-mounted XFS with reflinks: a 200 MB tree is copied by
//! sharing extents (constant time per file), and the copy equals the original.
#![allow(clippy::unwrap_used)]

use std::{
    os::unix::fs::{MetadataExt, symlink},
    path::Path,
    time::Instant,
};

use rwxnfs_agent::fs::{CloneMethod, RelPath, VolumeFs, plain::PlainFs};
use rwxnfs_model::Name;
use rwxnfs_testbed::{LoopFs, loopfs_run as run};

/// 200 files of 1 MiB with distinct content, in nested directories, plus links.
fn populate(root: &Path) {
    for d in 0..10 {
        let dir = root.join(format!("d{d}/sub"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..20 {
            let byte = (d * 20 + f) as u8;
            std::fs::write(dir.join(format!("f{f}")), vec![byte; 1 << 20]).unwrap();
        }
    }
    std::fs::hard_link(root.join("d0/sub/f0"), root.join("hard")).unwrap();
    symlink("d1/sub/f1", root.join("soft")).unwrap();
}

fn same_tree(a: &Path, b: &Path) {
    let mut count = 0;
    let mut stack = vec![std::path::PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in std::fs::read_dir(a.join(&rel)).unwrap() {
            let entry = entry.unwrap();
            let rel = rel.join(entry.file_name());
            let (ma, mb) = (
                std::fs::symlink_metadata(a.join(&rel)).unwrap(),
                std::fs::symlink_metadata(b.join(&rel)).unwrap(),
            );
            assert_eq!(
                (ma.mode(), ma.uid(), ma.gid(), ma.nlink()),
                (mb.mode(), mb.uid(), mb.gid(), mb.nlink()),
                "{}",
                rel.display()
            );
            if ma.is_dir() {
                stack.push(rel);
            } else if ma.file_type().is_symlink() {
                assert_eq!(
                    std::fs::read_link(a.join(&rel)).unwrap(),
                    std::fs::read_link(b.join(&rel)).unwrap()
                );
            } else {
                assert_eq!(
                    std::fs::read(a.join(&rel)).unwrap(),
                    std::fs::read(b.join(&rel)).unwrap(),
                    "{}",
                    rel.display()
                );
                count += 1;
            }
        }
    }
    assert!(count >= 200, "compared {count} files");
}

#[test]
fn a_200_mb_volume_is_cloned_by_reflink_and_equals_the_original() {
    let xfs = LoopFs::new("xfs", 1024, &["-q", "-m", "reflink=1"]);
    let fs = PlainFs::open(&xfs.mount).unwrap();
    let src = RelPath::volume(&Name::parse("src").unwrap());
    std::fs::create_dir_all(xfs.mount.join("volumes/src")).unwrap();
    populate(&xfs.mount.join("volumes/src"));
    run("sync", &[]);

    let started = Instant::now();
    let method = fs
        .clone_tree(&src, &RelPath::snapshot(&Name::parse("snap").unwrap()))
        .unwrap();
    let reflink = started.elapsed();
    assert_eq!(method, CloneMethod::Reflink);
    same_tree(
        &xfs.mount.join("volumes/src"),
        &xfs.mount.join("snapshots/snap"),
    );

    let started = Instant::now();
    run(
        "cp",
        &[
            "-a",
            "--reflink=never",
            xfs.mount.join("volumes/src").to_str().unwrap(),
            xfs.mount.join("plain-copy").to_str().unwrap(),
        ],
    );
    run("sync", &[]);
    let copy = started.elapsed();
    println!(
        "200 MiB tree: reflink clone {reflink:?}, byte copy (cp --reflink=never + sync) {copy:?}"
    );
}

#[test]
fn project_quotas_need_a_prjquota_mount_and_say_so() {
    let xfs = LoopFs::new("xfs", 300, &["-q", "-m", "reflink=1"]);
    let err = match rwxnfs_agent::fs::xfs::XfsFs::open(&xfs.mount) {
        Ok(_) => panic!("an XFS mounted without prjquota cannot enforce project quotas"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("prjquota"), "{err}");
    let tmp = tempfile::tempdir().unwrap();
    let err =
        rwxnfs_agent::fs::open_root(tmp.path(), Some(rwxnfs_agent::fs::QuotaKind::Xfs), false)
            .err()
            .unwrap();
    assert!(err.to_string().contains("not an XFS filesystem"), "{err}");
    // Auto-detection falls back to an unenforced root, and says so through quota_kind.
    let root = rwxnfs_agent::fs::open_root(&xfs.mount, None, false).unwrap();
    assert_eq!(root.quota_kind(), rwxnfs_agent::fs::QuotaKind::None);
}
