//! A subvolume's usage from its qgroup: the quota tree is searched (BTRFS_IOC_TREE_SEARCH) for
//! the qgroup's info item, whose referenced bytes are what the qgroup's limit is checked
//! against. Needs CAP_SYS_ADMIN, which the agent has (it mounts subvolumes).

/// _IOWR(0x94, 17, struct btrfs_ioctl_search_args)
pub(super) const BTRFS_IOC_TREE_SEARCH: libc::c_ulong = 0xD000_9411;
const BTRFS_QUOTA_TREE_OBJECTID: u64 = 8;
const BTRFS_QGROUP_INFO_KEY: u32 = 242;
/// struct btrfs_ioctl_search_args is 4096 bytes: the key, then the results.
const SEARCH_BUF_SIZE: usize = 4096 - std::mem::size_of::<SearchKey>();
const SEARCH_HEADER_SIZE: usize = 32;

/// struct btrfs_ioctl_search_key
#[repr(C)]
#[derive(Default)]
struct SearchKey {
    tree_id: u64,
    min_objectid: u64,
    max_objectid: u64,
    min_offset: u64,
    max_offset: u64,
    min_transid: u64,
    max_transid: u64,
    min_type: u32,
    max_type: u32,
    /// In: at most this many items; out: how many were found.
    nr_items: u32,
    unused: u32,
    unused1: u64,
    unused2: u64,
    unused3: u64,
    unused4: u64,
}

#[repr(C)]
pub(super) struct SearchArgs {
    key: SearchKey,
    buf: [u8; SEARCH_BUF_SIZE],
}

/// The search for the qgroup info item of level-0 qgroup `subvolume` (a subvolume's own
/// qgroup has the subvolume's id): key (0, BTRFS_QGROUP_INFO_KEY, qgroupid) in the quota tree.
pub(super) fn qgroup_info_search(subvolume: u64) -> SearchArgs {
    SearchArgs {
        key: SearchKey {
            tree_id: BTRFS_QUOTA_TREE_OBJECTID,
            min_offset: subvolume,
            max_offset: subvolume,
            max_transid: u64::MAX,
            min_type: BTRFS_QGROUP_INFO_KEY,
            max_type: BTRFS_QGROUP_INFO_KEY,
            nr_items: 1,
            ..Default::default()
        },
        buf: [0; SEARCH_BUF_SIZE],
    }
}

/// The referenced bytes from a search's results: a btrfs_ioctl_search_header (transid,
/// objectid, offset: u64; type, len: u32), then struct btrfs_qgroup_info_item (generation,
/// rfer, rfer_cmpr, excl, excl_cmpr: little-endian u64). None when nothing matched.
pub(super) fn referenced_bytes(args: &SearchArgs) -> Option<u64> {
    if args.key.nr_items == 0 {
        return None;
    }
    let buf = &args.buf;
    let u32_at = |at: usize| u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap_or([0; 4]));
    let (item_type, len) = (u32_at(24), u32_at(28) as usize);
    let item = buf.get(SEARCH_HEADER_SIZE..SEARCH_HEADER_SIZE + len)?;
    if item_type != BTRFS_QGROUP_INFO_KEY || len < 16 {
        return None;
    }
    Some(u64::from_le_bytes(item[8..16].try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_search_has_the_kernels_layout() {
        assert_eq!(std::mem::size_of::<SearchKey>(), 104);
        assert_eq!(std::mem::size_of::<SearchArgs>(), 4096);
        // _IOWR: both directions, the argument's size, type 0x94, number 17.
        assert_eq!(BTRFS_IOC_TREE_SEARCH >> 30, 3);
        assert_eq!((BTRFS_IOC_TREE_SEARCH >> 16) & 0x3fff, 4096);
        assert_eq!(BTRFS_IOC_TREE_SEARCH & 0xffff, 0x9411);
    }

    #[test]
    fn usage_is_asked_of_the_subvolumes_own_qgroup_info_item() {
        let args = qgroup_info_search(257);
        let k = &args.key;
        assert_eq!(k.tree_id, BTRFS_QUOTA_TREE_OBJECTID);
        assert_eq!((k.min_objectid, k.max_objectid), (0, 0));
        assert_eq!((k.min_type, k.max_type), (242, 242));
        assert_eq!((k.min_offset, k.max_offset), (257, 257));
        assert_eq!((k.min_transid, k.max_transid), (0, u64::MAX));
        assert_eq!(k.nr_items, 1);
    }

    #[test]
    fn the_referenced_bytes_are_read_from_the_qgroup_info_item() {
        let mut args = qgroup_info_search(257);
        assert_eq!(referenced_bytes(&args), None, "nothing found");
        args.key.nr_items = 1;
        let header = [
            7u64.to_ne_bytes().as_slice(),   // transid
            0u64.to_ne_bytes().as_slice(),   // objectid
            257u64.to_ne_bytes().as_slice(), // offset: the qgroup id
            BTRFS_QGROUP_INFO_KEY.to_ne_bytes().as_slice(),
            40u32.to_ne_bytes().as_slice(), // len
        ]
        .concat();
        let item = [9u64, 24 << 20, 24 << 20, 1 << 20, 1 << 20]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>();
        args.buf[..32].copy_from_slice(&header);
        args.buf[32..72].copy_from_slice(&item);
        assert_eq!(referenced_bytes(&args), Some(24 << 20));

        args.buf[24..28].copy_from_slice(&241u32.to_ne_bytes());
        assert_eq!(referenced_bytes(&args), None, "another item type");
    }
}
