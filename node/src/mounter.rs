//! Mount side effects, behind one trait: the real one uses mount(2) and umount2(2); a fake
//! records calls for unit tests. The mount table is read from /proc/self/mountinfo.
//!
//! Every call that may block on an NFS server runs on its own thread under a time limit (see
//! [`crate::guard`]); the methods here are the blocking system calls themselves.

use std::{
    io,
    path::{Path, PathBuf},
    sync::Mutex,
};

use nix::mount::{MntFlags, MsFlags};

/// One line of /proc/self/mountinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_point: PathBuf,
    /// The root of the mount within its filesystem (for bind mounts, the bound directory).
    pub root: PathBuf,
    pub fs_type: String,
    pub source: String,
    pub options: Vec<String>,
    pub major_minor: String,
}

impl MountEntry {
    pub fn read_only(&self) -> bool {
        self.options.iter().any(|o| o == "ro")
    }
}

/// Decodes the octal escapes mountinfo uses for space, tab, newline and backslash.
pub fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
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
            })
        })
        .collect()
}

/// What the node plugin does to mounts.
pub trait Mounter: Send + Sync + 'static {
    /// Mounts an NFS export: `fs_type` is "nfs4" or "nfs", `data` carries `addr=`.
    fn mount_nfs(
        &self,
        source: &str,
        target: &Path,
        fs_type: &str,
        flags: MsFlags,
        data: &str,
    ) -> io::Result<()>;
    /// Bind-mounts `source` onto `target`.
    fn bind(&self, source: &Path, target: &Path) -> io::Result<()>;
    /// Makes a bind mount read-only.
    fn remount_read_only(&self, target: &Path) -> io::Result<()>;
    fn unmount(&self, target: &Path, flags: MntFlags) -> io::Result<()>;
    fn mounts(&self) -> io::Result<Vec<MountEntry>>;
}

pub struct SystemMounter;

impl Mounter for SystemMounter {
    fn mount_nfs(
        &self,
        source: &str,
        target: &Path,
        fs_type: &str,
        flags: MsFlags,
        data: &str,
    ) -> io::Result<()> {
        nix::mount::mount(Some(source), target, Some(fs_type), flags, Some(data))
            .map_err(io::Error::from)
    }

    fn bind(&self, source: &Path, target: &Path) -> io::Result<()> {
        nix::mount::mount(
            Some(source),
            target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(io::Error::from)
    }

    fn remount_read_only(&self, target: &Path) -> io::Result<()> {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        nix::mount::mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
            .map_err(io::Error::from)
    }

    fn unmount(&self, target: &Path, flags: MntFlags) -> io::Result<()> {
        nix::mount::umount2(target, flags).map_err(io::Error::from)
    }

    fn mounts(&self) -> io::Result<Vec<MountEntry>> {
        Ok(parse_mountinfo(&std::fs::read_to_string(
            "/proc/self/mountinfo",
        )?))
    }
}

/// Records calls and keeps a pretend mount table.
#[derive(Default)]
pub struct FakeMounter {
    pub table: Mutex<Vec<MountEntry>>,
    pub calls: Mutex<Vec<String>>,
    /// When set, every call fails with this errno.
    pub fail: Mutex<Option<i32>>,
}

impl FakeMounter {
    fn record(&self, call: String) -> io::Result<()> {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(call);
        match *self.fail.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
            None => Ok(()),
        }
    }

    fn add(&self, point: &Path, fs_type: &str, source: &str, root: &Path, ro: bool) {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(MountEntry {
                mount_point: point.to_owned(),
                root: root.to_owned(),
                fs_type: fs_type.to_owned(),
                source: source.to_owned(),
                options: vec![if ro { "ro" } else { "rw" }.to_owned()],
                major_minor: "0:1".into(),
            });
    }
}

impl Mounter for FakeMounter {
    fn mount_nfs(
        &self,
        source: &str,
        target: &Path,
        fs_type: &str,
        _flags: MsFlags,
        data: &str,
    ) -> io::Result<()> {
        self.record(format!(
            "mount {fs_type} {source} {} {data}",
            target.display()
        ))?;
        self.add(target, fs_type, source, Path::new("/"), false);
        Ok(())
    }

    fn bind(&self, source: &Path, target: &Path) -> io::Result<()> {
        self.record(format!("bind {} {}", source.display(), target.display()))?;
        let staged = self
            .mounts()?
            .into_iter()
            .rev()
            .find(|m| m.mount_point == source);
        let (fs_type, src) = staged
            .map(|m| (m.fs_type, m.source))
            .unwrap_or(("none".into(), "none".into()));
        self.add(target, &fs_type, &src, Path::new("/"), false);
        Ok(())
    }

    fn remount_read_only(&self, target: &Path) -> io::Result<()> {
        self.record(format!("remount-ro {}", target.display()))?;
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = table.iter_mut().rev().find(|m| m.mount_point == target) {
            m.options = vec!["ro".into()];
        }
        Ok(())
    }

    fn unmount(&self, target: &Path, flags: MntFlags) -> io::Result<()> {
        self.record(format!("umount {} {:?}", target.display(), flags))?;
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        match table.iter().rposition(|m| m.mount_point == target) {
            Some(i) => {
                table.remove(i);
                Ok(())
            }
            None => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        }
    }

    fn mounts(&self) -> io::Result<Vec<MountEntry>> {
        Ok(self.table.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

#[cfg(test)]
mod tests {
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
}
