use std::{
    os::unix::fs::{MetadataExt, PermissionsExt, symlink},
    path::Path,
};

use nix::{fcntl::OFlag, sys::stat::Mode};

use super::*;

fn open(path: &Path) -> OwnedFd {
    nix::fcntl::open(path, OFlag::O_DIRECTORY | OFlag::O_RDONLY, Mode::empty()).unwrap()
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> bool {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    // SAFETY: valid C strings and buffer.
    unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        ) == 0
    }
}

fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings and buffer.
    let len =
        unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (len >= 0).then(|| buf[..len as usize].to_vec())
}

/// A tree with one of everything a volume can hold.
fn sample(root: &Path) -> bool {
    std::fs::create_dir_all(root.join("dir/sub")).unwrap();
    std::fs::write(root.join("dir/file"), b"hello").unwrap();
    std::fs::set_permissions(
        root.join("dir/file"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    std::fs::hard_link(root.join("dir/file"), root.join("dir/sub/hardlink")).unwrap();
    symlink("../file", root.join("dir/sub/link")).unwrap();
    symlink("/etc/passwd", root.join("dir/abs-link")).unwrap();
    std::fs::write(root.join("big"), vec![7u8; 3 << 20]).unwrap();
    nix::unistd::mkfifo(&root.join("fifo"), Mode::from_bits_truncate(0o620)).unwrap();
    std::os::unix::fs::chown(root.join("dir/file"), Some(1000), Some(1001)).unwrap();
    std::fs::set_permissions(root.join("dir"), std::fs::Permissions::from_mode(0o2750)).unwrap();
    set_xattr(&root.join("dir/file"), "user.test", b"v1")
}

#[test]
fn a_cloned_tree_keeps_content_modes_owners_links_and_xattrs() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    std::fs::create_dir(&src).unwrap();
    std::fs::create_dir(&dst).unwrap();
    let xattrs = sample(&src);
    let old = std::fs::symlink_metadata(src.join("dir/file")).unwrap();

    clone_tree(open(&src), open(&dst), Path::new("dst")).unwrap();

    assert_eq!(std::fs::read(dst.join("dir/file")).unwrap(), b"hello");
    assert_eq!(std::fs::read(dst.join("big")).unwrap().len(), 3 << 20);
    let new = std::fs::symlink_metadata(dst.join("dir/file")).unwrap();
    assert_eq!(
        (new.mode(), new.uid(), new.gid()),
        (old.mode(), old.uid(), old.gid())
    );
    assert_eq!(
        (new.mtime(), new.mtime_nsec()),
        (old.mtime(), old.mtime_nsec())
    );
    assert_eq!(new.nlink(), 2, "hard links stay links");
    assert_eq!(
        new.ino(),
        std::fs::metadata(dst.join("dir/sub/hardlink"))
            .unwrap()
            .ino()
    );
    assert_eq!(
        std::fs::read_link(dst.join("dir/sub/link")).unwrap(),
        Path::new("../file")
    );
    assert_eq!(
        std::fs::read_link(dst.join("dir/abs-link")).unwrap(),
        Path::new("/etc/passwd")
    );
    let dir_mode = std::fs::metadata(dst.join("dir")).unwrap().mode() & 0o7777;
    assert_eq!(dir_mode, 0o2750);
    assert_eq!(
        std::fs::symlink_metadata(dst.join("fifo")).unwrap().mode() & libc::S_IFMT,
        libc::S_IFIFO
    );
    if xattrs {
        assert_eq!(
            get_xattr(&dst.join("dir/file"), "user.test").as_deref(),
            Some(&b"v1"[..])
        );
    }
}

#[test]
fn removing_a_tree_never_follows_symlinks() {
    let tmp = tempfile::tempdir().unwrap();
    let (victim, outside) = (tmp.path().join("victim"), tmp.path().join("outside"));
    std::fs::create_dir_all(victim.join("a/b/c/d")).unwrap();
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("precious"), b"keep").unwrap();
    symlink(&outside, victim.join("a/to-outside")).unwrap();
    std::fs::write(victim.join("a/b/c/d/f"), b"x").unwrap();

    let removed = remove_contents(open(&victim), Path::new("victim")).unwrap();
    assert_eq!(removed, 6);
    assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 0);
    assert_eq!(std::fs::read(outside.join("precious")).unwrap(), b"keep");
}

#[test]
fn a_deep_tree_does_not_overflow_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let mut path = tmp.path().join("deep");
    std::fs::create_dir(&path).unwrap();
    let top = open(&path);
    for _ in 0..300 {
        path.push("d");
    }
    std::fs::create_dir_all(&path).unwrap();
    assert_eq!(remove_contents(top, Path::new("deep")).unwrap(), 300);
}

#[test]
fn a_visit_opens_directories_and_files_only_never_follows_a_symlink_and_ends_at_the_top() {
    let tmp = tempfile::tempdir().unwrap();
    let (tree, outside) = (tmp.path().join("tree"), tmp.path().join("outside"));
    std::fs::create_dir(&tree).unwrap();
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("precious"), b"keep").unwrap();
    sample(&tree);
    symlink(&outside, tree.join("dir/to-outside")).unwrap();
    let top = std::fs::metadata(&tree).unwrap().ino();
    let outsiders =
        [outside.as_path(), &outside.join("precious")].map(|p| std::fs::metadata(p).unwrap().ino());

    let mut seen = Vec::new();
    let done = visit_tree(open(&tree), Path::new("tree"), |fd, st| {
        assert_eq!(fstat(fd).unwrap().st_ino, st.st_ino);
        seen.push((st.st_ino, kind(st)));
        Ok(())
    })
    .unwrap();

    // dir, dir/sub, dir/file (twice: its hard link), big, and the top; three symlinks and the
    // FIFO are not opened.
    assert_eq!(
        done,
        Visited {
            visited: 6,
            skipped: 4
        }
    );
    assert_eq!(seen.last(), Some(&(top, SFlag::S_IFDIR)));
    assert!(
        seen.iter().all(
            |(ino, kind)| matches!(*kind, SFlag::S_IFDIR | SFlag::S_IFREG)
                && !outsiders.contains(ino)
        ),
        "{seen:?}"
    );
}
