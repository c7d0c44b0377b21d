//! `/proc/self/mountinfo`, which the node plugin reads to decide what is mounted where.

use rwxnfs_model::mountinfo::{parse_mountinfo, unescape};

/// Input: a mount table (not necessarily UTF-8: a mount point can be any bytes).
pub fn mountinfo(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let entries = parse_mountinfo(&text);
    assert!(entries.len() <= text.lines().count());
    for entry in &entries {
        let _ = entry.read_only();
    }
    for field in text.split([' ', '\n']) {
        let plain = unescape(field);
        // An escape only ever shortens a field.
        assert!(plain.len() <= field.len() * 3, "{field:?}");
        if !field.contains('\\') {
            assert_eq!(plain, field);
        }
    }
}
