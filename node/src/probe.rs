//! Whether this node's kernel can mount NFS at all.
//!
//! mount(2) loads the NFS client module on demand, so a kernel is ready when NFS is registered
//! in /proc/filesystems, its module is loaded, or its module file is installed.

use std::path::PathBuf;

use rwxnfs_server::Readiness;

#[derive(Clone)]
pub struct NfsClientCheck {
    proc_filesystems: PathBuf,
    sys_module: PathBuf,
    modules_dir: PathBuf,
}

impl Default for NfsClientCheck {
    fn default() -> Self {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        Self {
            proc_filesystems: "/proc/filesystems".into(),
            sys_module: "/sys/module/nfs".into(),
            modules_dir: PathBuf::from("/lib/modules")
                .join(release)
                .join("kernel/fs/nfs"),
        }
    }
}

impl NfsClientCheck {
    fn registered(&self) -> bool {
        std::fs::read_to_string(&self.proc_filesystems).is_ok_and(|table| {
            table
                .lines()
                .filter_map(|line| line.split_whitespace().last())
                .any(|fs| fs == "nfs" || fs == "nfs4")
        })
    }

    fn module_available(&self) -> bool {
        self.sys_module.exists()
            || std::fs::read_dir(&self.modules_dir).is_ok_and(|entries| {
                entries
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("nfs.ko"))
            })
    }

    fn verdict(&self) -> Result<(), String> {
        if self.registered() || self.module_available() {
            return Ok(());
        }
        Err(format!(
            "this kernel has no NFS client: neither nfs nor nfs4 is in {}, and no nfs module is \
             loaded ({}) or installed ({}); load it on the host with 'modprobe nfs' or install \
             the kernel's NFS client modules",
            self.proc_filesystems.display(),
            self.sys_module.display(),
            self.modules_dir.display()
        ))
    }
}

#[tonic::async_trait]
impl Readiness for NfsClientCheck {
    /// The reads are file system calls, so they run off the async threads.
    async fn check(&self) -> Result<(), String> {
        let check = self.clone();
        tokio::task::spawn_blocking(move || check.verdict())
            .await
            .unwrap_or_else(|e| Err(format!("the NFS client check failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_in(dir: &std::path::Path, filesystems: &str) -> NfsClientCheck {
        let proc = dir.join("filesystems");
        std::fs::write(&proc, filesystems).unwrap();
        NfsClientCheck {
            proc_filesystems: proc,
            sys_module: dir.join("sys-module-nfs"),
            modules_dir: dir.join("modules"),
        }
    }

    #[tokio::test]
    async fn a_kernel_with_nfs4_registered_is_ready() {
        let dir = tempfile::tempdir().unwrap();
        let check = check_in(dir.path(), "nodev\tproc\nnodev\tnfs\nnodev\tnfs4\n");
        assert!(check.check().await.is_ok());
    }

    #[tokio::test]
    async fn an_installed_but_unloaded_module_is_ready() {
        let dir = tempfile::tempdir().unwrap();
        let check = check_in(dir.path(), "nodev\tproc\n");
        std::fs::create_dir_all(dir.path().join("modules")).unwrap();
        std::fs::write(dir.path().join("modules/nfs.ko.xz"), b"").unwrap();
        assert!(check.check().await.is_ok());
    }

    #[tokio::test]
    async fn a_kernel_without_nfs_is_not_ready_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        // nfsd alone is the server, not the client.
        let check = check_in(dir.path(), "nodev\tproc\nnodev\tnfsd\n");
        let reason = check.check().await.unwrap_err();
        assert!(reason.contains("no NFS client"), "{reason}");
    }
}
