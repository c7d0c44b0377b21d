//! The OCI archive writer: the same inputs give the same bytes, the cache rewrites an archive
//! when an input changes and only then, and paths that would not unpack where they say are
//! refused. Whether containerd and skopeo read the archives is tests/images.rs's part.

use std::{os::unix::fs::MetadataExt, path::Path, time::Duration};

use rwxnfs_vmlab::oci::{self, Content, ImageSpec};

/// A spec of every kind of content, from files in `dir`.
fn sample(dir: &Path) -> ImageSpec {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("usr/share")).expect("create the tree");
    std::fs::write(tree.join("usr/share/data"), "data\n").expect("write");
    std::os::unix::fs::symlink("data", tree.join("usr/share/link")).expect("symlink");
    std::fs::write(dir.join("host-file"), "host\n").expect("write");
    let mut spec = ImageSpec::new("localhost/rwxnfs-lab/sample:1");
    spec.entrypoint = vec!["/bin/x".into()];
    spec.env = vec!["A=b".into()];
    spec.contents = vec![
        Content::Tree(tree),
        Content::File {
            path: "/bin/x".into(),
            from: dir.join("host-file"),
            mode: 0o755,
        },
        Content::Bytes {
            path: "/etc/motd".into(),
            data: b"hi\n".to_vec(),
            mode: 0o644,
        },
        Content::Dir {
            path: "/tmp".into(),
            mode: 0o1777,
        },
        Content::Symlink {
            path: "/sbin".into(),
            target: "bin".into(),
        },
    ];
    spec
}

#[test]
fn the_same_inputs_give_the_same_archive_whatever_their_times() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let spec = sample(dir.path());
    let first = oci::write_archive(&spec, &dir.path().join("a.tar")).expect("write");
    // A later modification time (and a later writing) changes nothing: times are zeroed.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(dir.path().join("host-file"), "host\n").expect("rewrite");
    let second = oci::write_archive(&spec, &dir.path().join("b.tar")).expect("write");
    assert_eq!(first, second);
    assert_eq!(
        std::fs::read(dir.path().join("a.tar")).expect("a"),
        std::fs::read(dir.path().join("b.tar")).expect("b")
    );
    std::fs::write(dir.path().join("host-file"), "Host\n").expect("change a byte");
    let third = oci::write_archive(&spec, &dir.path().join("c.tar")).expect("write");
    assert_ne!(first, third);
    assert!(first.starts_with("sha256:") && first.len() == 71, "{first}");
}

#[test]
fn a_cached_archive_is_rewritten_only_when_an_input_changes() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let spec = sample(dir.path());
    let cache = dir.path().join("cache");
    let first = oci::cached(&spec, &cache).expect("write");
    let inode = std::fs::metadata(&first).expect("the archive").ino();
    let again = oci::cached(&spec, &cache).expect("cached");
    assert_eq!(first, again);
    assert_eq!(std::fs::metadata(&again).expect("the archive").ino(), inode);

    std::fs::write(dir.path().join("host-file"), "longer\n").expect("change the input");
    let changed = oci::cached(&spec, &cache).expect("rewrite");
    assert_ne!(changed, first);
    assert!(!first.exists(), "the outdated archive is removed");
    let left: Vec<_> = std::fs::read_dir(&cache).expect("the cache").collect();
    assert_eq!(left.len(), 1, "one archive, no temporary files");
}

#[test]
fn paths_that_are_not_plain_or_under_a_file_are_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for bad in ["/", "/a/../b", "/a//b", "/./a"] {
        let mut spec = ImageSpec::new("localhost/x:1");
        spec.contents.push(Content::Dir {
            path: bad.into(),
            mode: 0o755,
        });
        let err = oci::write_archive(&spec, &dir.path().join("x.tar")).expect_err(bad);
        assert!(
            err.to_string().contains("not a plain absolute path"),
            "{err}"
        );
    }
    let mut spec = ImageSpec::new("localhost/x:1");
    spec.contents = vec![
        Content::Bytes {
            path: "/etc".into(),
            data: Vec::new(),
            mode: 0o644,
        },
        Content::Bytes {
            path: "/etc/passwd".into(),
            data: Vec::new(),
            mode: 0o644,
        },
    ];
    let err = oci::write_archive(&spec, &dir.path().join("x.tar")).expect_err("a file as parent");
    assert!(err.to_string().contains("not a directory"), "{err}");
    assert!(!dir.path().join("x.tar").exists());
}
