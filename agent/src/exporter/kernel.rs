//! Kernel nfsd, driven through `exportfs`.
//!
//! Each export becomes one `exportfs -o OPTIONS CLIENT:PATH` per client, with options
//! `rw|ro,sync,no_subtree_check,insecure,fsid=<export id>,<squash>,sec=sys`:
//!
//! - `fsid=` pins the file handle's filesystem id to the export id, which is the same on every
//!   NFS host, so handles stay valid after a failover;
//! - `sync` so a write the client was told is stable really is on the replicated disk;
//! - `insecure` because the node plugin mounts with `noresvport` (source ports above 1023),
//!   which lets a client reconnect quickly after a failover.
//!
//! A persistent exports file (e.g. `/etc/exports.d/rwxnfs.exports`) is regenerated on every
//! change, so a reboot of this host brings the same exports back. The program is always run
//! with an argument vector, never through a shell, and under a time limit.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use tokio::sync::Mutex;

use super::{Client, ExportError, ExportSpec, Exporter};
use crate::table::{Access, Squash};

/// Runs a helper program; faked in tests.
#[tonic::async_trait]
pub trait CommandRunner: Send + Sync + 'static {
    /// Runs `program` with `args`; Ok(stdout) on exit status 0, Err(message) otherwise.
    async fn run(&self, program: &Path, args: &[String]) -> Result<String, String>;
}

/// The real runner: tokio::process with a time limit; the child is killed if it overruns.
pub struct ProcessRunner {
    pub timeout: Duration,
}

#[tonic::async_trait]
impl CommandRunner for ProcessRunner {
    async fn run(&self, program: &Path, args: &[String]) -> Result<String, String> {
        let child = tokio::process::Command::new(program)
            .args(args)
            .kill_on_drop(true)
            .output();
        match tokio::time::timeout(self.timeout, child).await {
            Err(_) => Err(format!(
                "{} did not finish within {:?}",
                program.display(),
                self.timeout
            )),
            Ok(Err(e)) => Err(format!("cannot run {}: {e}", program.display())),
            Ok(Ok(out)) if out.status.success() => {
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            }
            Ok(Ok(out)) => Err(format!(
                "{} {} failed ({}): {}",
                program.display(),
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        }
    }
}

pub struct KernelExporter {
    exportfs: PathBuf,
    exports_file: PathBuf,
    runner: Arc<dyn CommandRunner>,
    /// What this agent has applied, by export id; the source of the exports file.
    applied: Mutex<BTreeMap<u32, ExportSpec>>,
    /// nfs-utils' table of active exports, created empty when missing (see `with_etab`).
    etab: Option<PathBuf>,
}

impl KernelExporter {
    pub fn new(exportfs: PathBuf, exports_file: PathBuf, runner: Arc<dyn CommandRunner>) -> Self {
        Self {
            exportfs,
            exports_file,
            runner,
            applied: Mutex::new(BTreeMap::new()),
            etab: None,
        }
    }

    /// exportfs fails ("can't open .../etab for reading") on a host where no NFS server has
    /// run yet, such as a standby NFS host taking over for the first time, whose
    /// nfs-server.service is started only after the agent. The agent creates the empty table
    /// there (as `exportfs -r` would) instead of failing its first reconcile.
    pub fn with_etab(mut self, etab: PathBuf) -> Self {
        self.etab = Some(etab);
        self
    }

    fn ensure_etab(&self) -> Result<(), ExportError> {
        let Some(etab) = &self.etab else {
            return Ok(());
        };
        let created = etab
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(etab)
                    .map(drop)
            });
        created
            .map_err(|e| ExportError::Unavailable(format!("cannot create {}: {e}", etab.display())))
    }

    async fn exportfs(&self, args: Vec<String>, export_id: u32) -> Result<String, ExportError> {
        self.ensure_etab()?;
        self.runner
            .run(&self.exportfs, &args)
            .await
            .map_err(|message| ExportError::Refused { export_id, message })
    }

    async fn write_exports_file(
        &self,
        applied: &BTreeMap<u32, ExportSpec>,
    ) -> Result<(), ExportError> {
        let text = render_exports_file(applied.values());
        let file = self.exports_file.clone();
        tokio::task::spawn_blocking(move || {
            let dir = file.parent().unwrap_or(Path::new("/"));
            std::fs::create_dir_all(dir)?;
            crate::table::atomic_write(dir, &file, text.as_bytes())
        })
        .await
        .map_err(|e| ExportError::Unavailable(format!("writing the exports file: {e}")))?
        .map_err(|source| ExportError::Io {
            export_id: 0,
            source,
        })
    }
}

/// The `-o` options for one client of an export.
pub fn options(spec: &ExportSpec, access: Access) -> String {
    let squash = match spec.squash {
        Squash::None => "no_root_squash",
        Squash::Root => "root_squash",
        Squash::All => "all_squash",
    };
    let rw = match access {
        Access::Rw => "rw",
        Access::Ro => "ro",
    };
    format!(
        "{rw},sync,no_subtree_check,insecure,fsid={},{squash},sec=sys",
        spec.export_id
    )
}

/// How exportfs names a client: IPv6 in brackets so the ':' before the path is unambiguous.
pub fn client_name(client: &Client) -> String {
    match client {
        Client::Address(std::net::IpAddr::V6(a)) => format!("[{a}]"),
        Client::Network(ipnet::IpNet::V6(n)) => format!("[{}]/{}", n.addr(), n.prefix_len()),
        other => other.to_string(),
    }
}

fn target(client: &Client, path: &Path) -> String {
    format!("{}:{}", client_name(client), path.display())
}

/// The persistent exports file for these specs (exports(5) syntax).
pub fn render_exports_file<'a>(specs: impl Iterator<Item = &'a ExportSpec>) -> String {
    let mut out = String::from("# Generated by rwxnfs agent from its export table. Do not edit.\n");
    for spec in specs {
        if spec.clients.is_empty() {
            out.push_str(&format!(
                "# export {} {}: no clients\n",
                spec.export_id,
                spec.path.display()
            ));
            continue;
        }
        out.push_str(&format!("\"{}\"", spec.path.display()));
        for (client, access) in &spec.clients {
            out.push_str(&format!(" {}({})", client, options(spec, *access)));
        }
        out.push('\n');
    }
    out
}

/// Export ids (fsid=) in `exportfs -v` output. Long paths put the client on the next line.
pub fn parse_active(listing: &str) -> Vec<u32> {
    let mut ids: Vec<u32> = listing
        .split(|c: char| c == '(' || c == ')' || c == ',' || c.is_whitespace())
        .filter_map(|token| token.strip_prefix("fsid="))
        .filter_map(|id| id.parse().ok())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

#[tonic::async_trait]
impl Exporter for KernelExporter {
    fn kind(&self) -> &'static str {
        "kernel"
    }

    fn client_path(&self, _name: &str, absolute: &Path) -> String {
        absolute.display().to_string()
    }

    async fn apply(&self, spec: &ExportSpec) -> Result<(), ExportError> {
        let mut applied = self.applied.lock().await;
        let previous = applied.get(&spec.export_id).cloned();
        for (client, access) in &spec.clients {
            let args = vec![
                "-o".into(),
                options(spec, *access),
                target(client, &spec.path),
            ];
            self.exportfs(args, spec.export_id).await?;
        }
        // Clients that were exported before and are not any more.
        if let Some(previous) = previous {
            for (client, _) in &previous.clients {
                let still = spec.clients.iter().any(|(c, _)| c == client);
                if !still || previous.path != spec.path {
                    let args = vec!["-u".into(), target(client, &previous.path)];
                    self.exportfs(args, spec.export_id).await?;
                }
            }
        }
        applied.insert(spec.export_id, spec.clone());
        self.write_exports_file(&applied).await
    }

    async fn remove(&self, export_id: u32) -> Result<(), ExportError> {
        let mut applied = self.applied.lock().await;
        if let Some(previous) = applied.remove(&export_id) {
            for (client, _) in &previous.clients {
                let args = vec!["-u".into(), target(client, &previous.path)];
                // Already unexported (e.g. after a restart of nfsd): fine.
                if let Err(e) = self.exportfs(args, export_id).await {
                    tracing::debug!(export_id, error = %e, "exportfs -u failed; treating as already gone");
                }
            }
        }
        self.write_exports_file(&applied).await
    }

    async fn active(&self) -> Result<Vec<u32>, ExportError> {
        let listing = self.exportfs(vec!["-v".into()], 0).await?;
        Ok(parse_active(&listing))
    }

    async fn probe(&self) -> Result<(), String> {
        match self.exportfs(vec!["-v".into()], 0).await {
            Ok(_) => Ok(()),
            Err(ExportError::Refused { message, .. }) => Err(message),
            Err(e) => Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests;
