//! NFS mount options from a StorageClass (`mountOptions`, the parameter of that name) and a
//! PersistentVolume, merged over the defaults and rendered for mount(2).

use std::net::IpAddr;

use rwxnfs_model::{MountOptions, NfsVersion, mount_options::VFS_FLAGS};

/// Input: the first byte picks the volume's NFS version; the rest, one user option string a
/// line, as a StorageClass's `mountOptions` list gives them.
pub fn mount_options(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let version = [NfsVersion::V3, NfsVersion::V4_1, NfsVersion::V4_2][usize::from(first % 3)];
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let Ok(merged) = MountOptions::merge(version, text.lines()) else {
        return;
    };
    let server: IpAddr = [192, 0, 2, 1].into();
    let data = merged.data(server);
    let options: Vec<&str> = data.split(',').collect();
    // The server address is ours alone: exactly one addr=, the one the node plugin sets.
    assert_eq!(
        options.iter().filter(|o| o.starts_with("addr=")).count(),
        1,
        "{data}"
    );
    assert_eq!(options.last(), Some(&"addr=192.0.2.1"), "{data}");
    for flag in merged.vfs_flags() {
        assert!(VFS_FLAGS.contains(&flag), "{flag}");
        assert!(
            !options.contains(&flag),
            "{flag} is a mount flag, not data: {data}"
        );
    }
    assert!(!data.contains(['\0', '\n']), "{data:?}");
    assert!(["3", "4", "4.0", "4.1", "4.2"].contains(&merged.version()));
    // What was merged merges again to itself: the rendering is a fixed point.
    let again = MountOptions::merge(
        version,
        merged
            .options
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str),
    )
    .unwrap_or_else(|e| panic!("merged options {data} do not merge again: {e}"));
    assert_eq!(again, merged);
}
