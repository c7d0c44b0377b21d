//! Kernel nfsd, driven through its exports file and `exportfs -r`.
//!
//! The exporter keeps the exports it should have in memory, writes them all to a persistent
//! exports file (`/etc/exports.d/rwxnfs.exports`), and runs one `exportfs -r`, which brings
//! nfs-utils' table and the kernel's to what the files say: exports added, client lists
//! changed and exports removed in one pass. Changes that arrive while a commit runs share the
//! next one ([`GroupCommit`]), so N concurrent creates cost two commits, and reconcile puts
//! 10,000 exports back with one file and one process, where a process per client and export
//! would take minutes. Each export line gives every client its options,
//! `rw|ro,sync,no_subtree_check,insecure,fsid=<export id>,<squash>,sec=sys`, and for a claim
//! with an encrypted transport `xprtsec=tls:mtls` (`tls`: any RPC-with-TLS client) or
//! `xprtsec=mtls` (only clients whose certificate the host's `tlshd` trusts):
//!
//! - `fsid=` pins the file handle's filesystem id to the export id, which is the same on every
//!   NFS host, so handles stay valid after a failover;
//! - `sync` so a write the client was told is stable really is on the replicated disk;
//! - `insecure` because the node plugin mounts with `noresvport` (source ports above 1023),
//!   which lets a client reconnect quickly after a failover.
//!
//! `exportfs -r` also removes exports that no exports file names (ones added by hand with
//! `exportfs -o`): the NFS host's own exports belong in `/etc/exports` or another file under
//! `/etc/exports.d`. Until reconcile has handed over the whole table
//! ([`Exporter::apply_all`]), single changes are refused as unavailable, because a commit
//! then would unexport everything not yet reconciled. A reboot of this host brings the same
//! exports back from the file. The program is always run with an argument vector, never
//! through a shell, and under a time limit.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use super::{Client, ExportError, ExportSpec, Exporter};
use crate::{
    group_commit::GroupCommit,
    table::{Access, Squash},
};
use rwxnfs_model::Transport;

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
    inner: Arc<Inner>,
    commits: GroupCommit<Committed>,
}

struct Inner {
    exportfs: PathBuf,
    exports_file: PathBuf,
    runner: Arc<dyn CommandRunner>,
    /// nfs-utils' table of active exports, created empty when missing (see `with_etab`).
    etab: Option<PathBuf>,
    state: std::sync::Mutex<State>,
}

/// What the exports file should say. `generation` counts changes: the tickets of
/// [`GroupCommit`]. Until `seeded` (reconcile's first [`Exporter::apply_all`]), the exporter
/// knows only part of the table, and a commit would unexport the rest.
#[derive(Default)]
struct State {
    desired: BTreeMap<u32, ExportSpec>,
    generation: u64,
    seeded: bool,
}

/// A commit's outcome, shared by every caller it covered.
type Committed = Result<(), Arc<CommitFailure>>;

#[derive(Debug)]
struct CommitFailure {
    message: String,
    /// The server could not be driven at all (the file could not be written): no export of
    /// the batch was applied.
    unavailable: bool,
    /// What nfs-utils' table says after the failed `exportfs -r`: the exports of the batch
    /// that did go live, so only the callers whose export did not get the error.
    etab: Option<Etab>,
}

impl KernelExporter {
    pub fn new(exportfs: PathBuf, exports_file: PathBuf, runner: Arc<dyn CommandRunner>) -> Self {
        // What a killed agent was writing (only this file's: the directory is shared).
        if let (Some(dir), Some(name)) = (exports_file.parent(), exports_file.file_name()) {
            let of = format!("{}.", name.to_string_lossy());
            crate::table::remove_leftover_temporaries(dir, &of);
        }
        Self {
            inner: Arc::new(Inner {
                exportfs,
                exports_file,
                runner,
                etab: None,
                state: std::sync::Mutex::default(),
            }),
            commits: GroupCommit::default(),
        }
    }

    /// exportfs fails ("can't open .../etab for reading") on a host where no NFS server has
    /// run yet, such as a standby NFS host taking over for the first time, whose
    /// nfs-server.service is started only after the agent. The agent creates the empty table
    /// there (as `exportfs -r` would) instead of failing its first reconcile. It is also where
    /// the exporter reads which exports of a partly failed batch went live.
    pub fn with_etab(mut self, etab: PathBuf) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("with_etab is called while building the exporter")
            .etab = Some(etab);
        self
    }

    async fn exportfs(&self, args: Vec<String>, export_id: u32) -> Result<String, ExportError> {
        self.inner.exportfs(args, export_id).await
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state()
    }

    /// Changes what the exports file should say and waits for a commit that carries the
    /// change. Refused before reconcile has told the exporter the whole table.
    async fn change(
        &self,
        change: impl FnOnce(&mut BTreeMap<u32, ExportSpec>),
    ) -> Result<Result<(), Arc<CommitFailure>>, ExportError> {
        let ticket = {
            let mut state = self.state();
            if !state.seeded {
                return Err(ExportError::Unavailable(
                    "the agent is still putting the table's exports back on the NFS server \
                     (reconcile); retry shortly"
                        .into(),
                ));
            }
            change(&mut state.desired);
            state.generation += 1;
            state.generation
        };
        Ok(self.commit(ticket).await)
    }

    async fn commit(&self, ticket: u64) -> Committed {
        let inner = self.inner.clone();
        self.commits.wait(ticket, move || inner.commit()).await
    }

    /// After a failed commit: whether `spec` went live anyway (another export of the batch
    /// failed), or else the error for this caller, with its change undone so later commits
    /// do not carry it. `previous` is what the exporter had for this id before.
    fn verdict(
        &self,
        spec: &ExportSpec,
        previous: Option<ExportSpec>,
        failure: &CommitFailure,
    ) -> Result<(), ExportError> {
        if failure.etab.as_ref().is_some_and(|etab| etab.serves(spec)) {
            tracing::warn!(export_id = spec.export_id, error = %failure.message, "exportfs -r reported an error for another export of the batch");
            return Ok(());
        }
        let mut state = self.state();
        if state.desired.get(&spec.export_id) == Some(spec) {
            match previous {
                Some(previous) => state.desired.insert(spec.export_id, previous),
                None => state.desired.remove(&spec.export_id),
            };
            state.generation += 1;
        }
        Err(failure.error(spec.export_id))
    }
}

impl CommitFailure {
    fn error(&self, export_id: u32) -> ExportError {
        if self.unavailable {
            ExportError::Unavailable(self.message.clone())
        } else {
            ExportError::Refused {
                export_id,
                message: self.message.clone(),
            }
        }
    }
}

impl Inner {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
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

    /// One commit: the exports file rewritten from what is desired now, then one
    /// `exportfs -r`, which makes nfs-utils' table (and through it the kernel's) match the
    /// files, adding, changing and removing exports in one pass. Returns the generation the
    /// file carried.
    async fn commit(self: Arc<Self>) -> (u64, Committed) {
        let (covered, text) = {
            let state = self.state();
            (
                state.generation,
                render_exports_file(state.desired.values()),
            )
        };
        let failure = |message: String, unavailable: bool, etab: Option<Etab>| {
            Err(Arc::new(CommitFailure {
                message,
                unavailable,
                etab,
            }))
        };
        if let Err(e) = self.write_exports_file(text).await {
            return (covered, failure(e, true, None));
        }
        if let Err(e) = self.ensure_etab() {
            return (covered, failure(e.to_string(), true, None));
        }
        let started = std::time::Instant::now();
        let result = self.runner.run(&self.exportfs, &["-r".to_string()]).await;
        tracing::debug!(generation = covered, took = ?started.elapsed(), "exportfs -r");
        match result {
            Ok(_) => (covered, Ok(())),
            Err(message) => {
                let etab = self.read_etab().await;
                (covered, failure(message, false, etab))
            }
        }
    }

    async fn write_exports_file(&self, text: String) -> Result<(), String> {
        let file = self.exports_file.clone();
        tokio::task::spawn_blocking(move || {
            let dir = file.parent().unwrap_or(Path::new("/"));
            std::fs::create_dir_all(dir)?;
            crate::table::atomic_write(dir, &file, text.as_bytes())
        })
        .await
        .map_err(|e| format!("writing the exports file: {e}"))?
        .map_err(|e| format!("writing {}: {e}", self.exports_file.display()))
    }

    async fn read_etab(&self) -> Option<Etab> {
        let path = self.etab.clone()?;
        match tokio::fs::read_to_string(&path).await {
            Ok(text) => Some(Etab::parse(&text)),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read nfs-utils' export table");
                None
            }
        }
    }
}

/// nfs-utils' table of active exports (`/var/lib/nfs/etab`): one line per client,
/// `PATH<TAB>CLIENT(OPTIONS)`, the options spelled out in full (`fsid=`, `rw` or `ro`).
#[derive(Debug, Default)]
pub struct Etab {
    /// (fsid, client as the table spells it) -> read-write.
    entries: std::collections::HashMap<(u32, String), bool>,
}

impl Etab {
    pub fn parse(text: &str) -> Self {
        let mut entries = std::collections::HashMap::new();
        for line in text.lines() {
            let Some((_, client)) = line.rsplit_once(['\t', ' ']) else {
                continue;
            };
            let Some((name, options)) = client.split_once('(') else {
                continue;
            };
            let options: Vec<&str> = options.trim_end_matches(')').split(',').collect();
            let Some(fsid) = options
                .iter()
                .find_map(|o| o.strip_prefix("fsid="))
                .and_then(|id| id.parse().ok())
            else {
                continue;
            };
            let rw = options.contains(&"rw");
            entries.insert((fsid, normalise_client(name)), rw);
        }
        Self { entries }
    }

    /// Whether every client of `spec` is in the table with the access it asks for.
    pub fn serves(&self, spec: &ExportSpec) -> bool {
        spec.clients.iter().all(|(client, access)| {
            self.entries
                .get(&(spec.export_id, normalise_client(&client.to_string())))
                .is_some_and(|rw| *rw == (*access == Access::Rw))
        })
    }
}

/// A client name as an address or network when it is one (so `fd00::1` and `[fd00::1]`
/// compare equal), else as written.
fn normalise_client(name: &str) -> String {
    let bare = name.trim_start_matches('[').replace(']', "");
    if let Ok(addr) = bare.parse::<std::net::IpAddr>() {
        return addr.to_string();
    }
    if let Ok(net) = bare.parse::<ipnet::IpNet>() {
        return net.to_string();
    }
    name.to_owned()
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
    // `tls` admits mutual-TLS transports too: a node's mounts of one server share one
    // connection, so a node that also mounts an `mtls` claim reaches a `tls` one over mTLS.
    // `none` sets nothing: the kernel then admits every transport, for the same reason.
    let xprtsec = match spec.transport {
        Transport::None => "",
        Transport::Tls => ",xprtsec=tls:mtls",
        Transport::Mtls => ",xprtsec=mtls",
    };
    format!(
        "{rw},sync,no_subtree_check,insecure,fsid={},{squash},sec=sys{xprtsec}",
        spec.export_id
    )
}

/// Whether a kernel of this release (`uname -r`) has RPC-with-TLS: Linux 6.5 added it to
/// nfsd and the client (with the `tlshd` handshake daemon doing the TLS handshake).
pub fn rpc_tls_support(release: &str) -> Result<(), String> {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) if (major, minor) >= (6, 5) => Ok(()),
        (Some(_), Some(_)) => Err(format!(
            "this NFS host runs Linux {release}, which has no RPC-with-TLS (RFC 9289): it \
             needs 6.5 or later, nfs-utils 2.6.3 or later and tlshd (ktls-utils)"
        )),
        _ => Err(format!(
            "cannot tell whether Linux {release:?} has RPC-with-TLS"
        )),
    }
}

/// How exportfs names a client: IPv6 in brackets so the ':' before the path is unambiguous.
pub fn client_name(client: &Client) -> String {
    match client {
        Client::Address(std::net::IpAddr::V6(a)) => format!("[{a}]"),
        Client::Network(ipnet::IpNet::V6(n)) => format!("[{}]/{}", n.addr(), n.prefix_len()),
        other => other.to_string(),
    }
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

    fn supports(&self, transport: Transport) -> Result<(), String> {
        if !transport.is_tls() {
            return Ok(());
        }
        // The running kernel does not change: read and judge it once, not on every create.
        static SUPPORT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
        SUPPORT
            .get_or_init(|| {
                let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
                    .map_err(|e| format!("/proc/sys/kernel/osrelease: {e}"))?;
                rpc_tls_support(release.trim())
            })
            .clone()
    }

    fn client_path(&self, _name: &str, absolute: &Path) -> String {
        absolute.display().to_string()
    }

    async fn apply(&self, spec: &ExportSpec) -> Result<(), ExportError> {
        let mut previous = None;
        let committed = self
            .change(|desired| previous = desired.insert(spec.export_id, spec.clone()))
            .await?;
        match committed {
            Ok(()) => Ok(()),
            Err(failure) => self.verdict(spec, previous, &failure),
        }
    }

    /// Every export in one commit: one file, one `exportfs -r`, whatever their number. Once
    /// that commit ran, the exporter knows the whole table and accepts single changes.
    async fn apply_all(&self, specs: &[ExportSpec]) -> Vec<Result<(), ExportError>> {
        let mut previous = Vec::with_capacity(specs.len());
        let ticket = {
            let mut state = self.state();
            for spec in specs {
                previous.push(state.desired.insert(spec.export_id, spec.clone()));
            }
            state.generation += 1;
            state.generation
        };
        match self.commit(ticket).await {
            Ok(()) => {
                self.state().seeded = true;
                specs.iter().map(|_| Ok(())).collect()
            }
            // exportfs ran: what it refused is known, and only that is taken back.
            Err(failure) if failure.etab.is_some() => {
                self.state().seeded = true;
                specs
                    .iter()
                    .zip(previous)
                    .map(|(spec, previous)| self.verdict(spec, previous, &failure))
                    .collect()
            }
            // Nothing is known to have changed on the server (the file could not be written,
            // or there is no table to read): everything stays desired for the next commit.
            Err(failure) => specs
                .iter()
                .map(|spec| Err(failure.error(spec.export_id)))
                .collect(),
        }
    }

    async fn remove(&self, export_id: u32) -> Result<(), ExportError> {
        let mut previous = None;
        let committed = self
            .change(|desired| previous = desired.remove(&export_id))
            .await?;
        let Err(failure) = committed else {
            return Ok(());
        };
        let gone = failure
            .etab
            .as_ref()
            .is_some_and(|etab| !etab.entries.keys().any(|(fsid, _)| *fsid == export_id));
        if gone {
            return Ok(());
        }
        // Still exported: put it back where it was, so the table and the file agree.
        if let Some(previous) = previous {
            let mut state = self.state();
            state.desired.entry(export_id).or_insert(previous);
            state.generation += 1;
        }
        Err(failure.error(export_id))
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
