//! /proc/self/mountinfo, parsed properly: octal escapes in paths, optional fields, the `-`
//! separator.

use std::path::PathBuf;

/// One line of /proc/self/mountinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_point: PathBuf,
    /// The root of the mount within its filesystem (for bind mounts, the bound directory).
    pub root: PathBuf,
    pub fs_type: String,
    pub source: String,
    pub options: Vec<String>,
    /// The filesystem's own options (after the source), e.g. `prjquota` on XFS.
    pub super_options: Vec<String>,
    pub major_minor: String,
}

impl MountEntry {
    pub fn read_only(&self) -> bool {
        self.options.iter().any(|o| o == "ro")
    }
}

/// Decodes the octal escapes mountinfo uses for space, tab, newline and backslash. Only
/// `\000` to `\377` are escapes (one byte); anything else is kept as written.
pub fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && (b'0'..=b'3').contains(&bytes[i + 1])
            && bytes[i + 2..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value =
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses /proc/self/mountinfo; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            if sep < 6 || fields.len() < sep + 3 {
                return None;
            }
            Some(MountEntry {
                major_minor: fields[2].to_owned(),
                root: PathBuf::from(unescape(fields[3])),
                mount_point: PathBuf::from(unescape(fields[4])),
                options: fields[5].split(',').map(str::to_owned).collect(),
                fs_type: fields[sep + 1].to_owned(),
                source: unescape(fields[sep + 2]),
                super_options: fields
                    .get(sep + 3)
                    .map(|o| o.split(',').map(str::to_owned).collect())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn mountinfo_lines_parse_with_optional_fields_and_escapes() {
        let text = "36 35 98:0 /mnt1 /mnt\\040with\\011tab\\012nl\\134bs rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n\
                    40 36 0:50 / /var/lib/kubelet/pods/x/volumes/v rw,relatime shared:5 master:2 - nfs4 10.0.0.1:/pvc-1 rw,vers=4.2,addr=10.0.0.1\n\
                    garbage line\n";
        let entries = parse_mountinfo(text);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].mount_point, Path::new("/mnt with\ttab\nnl\\bs"));
        assert_eq!(entries[0].root, Path::new("/mnt1"));
        assert_eq!(entries[0].fs_type, "ext3");
        assert_eq!(entries[1].fs_type, "nfs4");
        assert_eq!(entries[1].source, "10.0.0.1:/pvc-1");
        assert!(!entries[1].read_only());
    }

    #[test]
    fn unescape_leaves_other_backslashes_alone() {
        assert_eq!(unescape("a\\x"), "a\\x");
        assert_eq!(unescape("a\\04"), "a\\04");
        assert_eq!(unescape("\\040"), " ");
    }

    #[test]
    fn an_octal_escape_beyond_one_byte_is_kept_as_written() {
        // Found by the mountinfo fuzz target: "\\734" overflowed the byte it was decoded into.
        assert_eq!(unescape("a\\734b"), "a\\734b");
        assert_eq!(unescape("\\400"), "\\400");
        assert_eq!(unescape("\\377"), "\u{fffd}");
        let entries = parse_mountinfo("36 35 98:0 / /mnt\\734bs rw - ext4 /dev/vda rw\n");
        assert_eq!(entries[0].mount_point, Path::new("/mnt\\734bs"));
    }
}
