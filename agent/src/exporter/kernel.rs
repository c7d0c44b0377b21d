//! Kernel nfsd, driven through nfs-utils' export table.
//!
//! The exporter keeps the exports it should have in memory and commits them to the NFS server
//! in one of two ways ([`KernelApply`]):
//!
//! - **`etab`** (the default): the exporter writes nfs-utils' table of active exports
//!   (`/var/lib/nfs/etab`) itself, under nfs-utils' own lock, and flushes the kernel's export
//!   caches, as `exportfs` ends every change. `rpc.mountd` reads the new table at the kernel's
//!   next upcall. A commit costs one write of the table and four small writes under
//!   `/proc/net/rpc`, and no process: each export's lines are rendered when it changes, and
//!   the host's lines are read back only when another program has replaced the table.
//!   `exportfs -r` instead checks every export with the kernel one by one (a `stat`, a `statfs` and a trial export each), which took 34 s with
//!   10,000 exports in an emulated VM, at every change and every takeover. Lines of the table
//!   whose path is not under the export root (the host's own exports) are kept as they are.
//!   No exports file names the agent's exports, so the host's `exportfs -a` (nfs-server's
//!   start, with the drop-in manifests/ha/systemd ships, when the host has exports of its
//!   own) keeps them and checks none of them; an
//!   `exportfs -r` by hand drops them, and the exporter, which watches the table, puts them
//!   back within two seconds.
//! - **`exportfs`**: the exporter writes every export to a persistent exports file
//!   (`/etc/exports.d/rwxnfs.exports`) and runs one `exportfs -r`, which brings nfs-utils'
//!   table and the kernel's to what the files say. Each commit then costs time in proportion to
//!   every export, changed or not.
//!
//! Either way, changes that arrive while a commit runs share the next one ([`GroupCommit`]),
//! so N concurrent creates cost two commits, and reconcile puts 10,000 exports back with one
//! commit. Each export gives every client its options,
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
//! Until reconcile has handed over the whole table ([`Exporter::apply_all`]), single changes
//! are refused as unavailable, because a commit then would unexport everything not yet
//! reconciled. A helper program is always run with an argument vector, never through a
//! shell, and under a time limit.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
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
}

/// How a commit reaches the kernel (see the module's documentation).
pub enum KernelApply {
    /// Write nfs-utils' table directly and flush the kernel's export caches.
    Etab {
        /// The export root: the table's lines under it are the agent's, the rest the host's.
        root: PathBuf,
        /// `/proc/net/rpc`, where the kernel's caches are flushed.
        proc_rpc: PathBuf,
    },
    /// Rewrite an exports file and run `exportfs -r`.
    Exportfs {
        exportfs: PathBuf,
        exports_file: PathBuf,
        runner: Arc<dyn CommandRunner>,
    },
}

struct Inner {
    apply: KernelApply,
    /// nfs-utils' table of active exports: written in `etab` mode; in `exportfs` mode created
    /// empty when missing (see `with_etab`) and read after a failed commit.
    etab: Option<PathBuf>,
    state: std::sync::Mutex<State>,
    commits: GroupCommit<Committed>,
    /// The inode of the table this exporter wrote last (`etab` mode): another one means
    /// somebody else rewrote it (an `exportfs -r` by hand).
    written_inode: AtomicU64,
    /// What the last commit wrote (`etab` mode), for the next one.
    written: std::sync::Mutex<Option<Written>>,
    watching: AtomicBool,
}

/// What the exports file should say. `generation` counts changes: the tickets of
/// [`GroupCommit`]. Until `seeded` (reconcile's first [`Exporter::apply_all`]), the exporter
/// knows only part of the table, and a commit would unexport the rest.
#[derive(Default)]
struct State {
    desired: Desired,
    generation: u64,
    seeded: bool,
}

/// The exports the server should have, each with its lines of nfs-utils' table rendered when
/// it changed, so a commit joins 10,000 exports' lines instead of formatting 30,000 anew.
#[derive(Default)]
struct Desired {
    exports: BTreeMap<u32, (ExportSpec, String)>,
    /// Counts the changes to the lines ([`Desired::etab_lines`]): a commit whose lines are the
    /// last commit's (a create without clients has none) writes nothing and flushes nothing.
    version: u64,
}

impl Desired {
    fn insert(&mut self, spec: ExportSpec) -> Option<ExportSpec> {
        let lines = render_etab(std::iter::once(&spec));
        let before = self.exports.get(&spec.export_id).map_or("", |(_, l)| l);
        if before != lines {
            self.version += 1;
        }
        self.exports
            .insert(spec.export_id, (spec, lines))
            .map(|(s, _)| s)
    }

    fn remove(&mut self, export_id: u32) -> Option<ExportSpec> {
        let old = self.exports.remove(&export_id);
        if old.as_ref().is_some_and(|(_, l)| !l.is_empty()) {
            self.version += 1;
        }
        old.map(|(s, _)| s)
    }

    fn get(&self, export_id: u32) -> Option<&ExportSpec> {
        self.exports.get(&export_id).map(|(s, _)| s)
    }

    fn values(&self) -> impl Iterator<Item = &ExportSpec> {
        self.exports.values().map(|(s, _)| s)
    }

    /// The agent's lines of nfs-utils' table: [`render_etab`] of every export.
    fn etab_lines(&self) -> String {
        let len = self.exports.values().map(|(_, l)| l.len()).sum();
        let mut out = String::with_capacity(len);
        for (_, lines) in self.exports.values() {
            out.push_str(lines);
        }
        out
    }
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
    /// The `exportfs` mode: `exports_file` rewritten and `exportfs -r` run at each commit.
    pub fn new(exportfs: PathBuf, exports_file: PathBuf, runner: Arc<dyn CommandRunner>) -> Self {
        // What a killed agent was writing (only this file's: the directory is shared).
        if let (Some(dir), Some(name)) = (exports_file.parent(), exports_file.file_name()) {
            let of = format!("{}.", name.to_string_lossy());
            crate::table::remove_leftover_temporaries(dir, &of);
        }
        Self::with_apply(
            KernelApply::Exportfs {
                exportfs,
                exports_file,
                runner,
            },
            None,
        )
    }

    /// The `etab` mode: nfs-utils' table at `etab` written directly, the lines under `root`
    /// being the agent's, and the kernel's caches under `proc_rpc` flushed at each commit.
    pub fn direct(etab: PathBuf, root: PathBuf, proc_rpc: PathBuf) -> Self {
        if let Some(dir) = etab.parent() {
            crate::table::remove_leftover_temporaries(dir, ETAB_TEMPORARY);
        }
        Self::with_apply(KernelApply::Etab { root, proc_rpc }, Some(etab))
    }

    fn with_apply(apply: KernelApply, etab: Option<PathBuf>) -> Self {
        Self {
            inner: Arc::new(Inner {
                apply,
                etab,
                state: std::sync::Mutex::default(),
                commits: GroupCommit::default(),
                written_inode: AtomicU64::new(0),
                written: std::sync::Mutex::new(None),
                watching: AtomicBool::new(false),
            }),
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
        change: impl FnOnce(&mut Desired),
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
        self.inner.clone().commit_covering(ticket).await
    }

    /// In `etab` mode, once the table is whole: every two seconds, whether another program
    /// changed the agent's lines of nfs-utils' table (an `exportfs -r` by hand drops them,
    /// since no exports file names them; `exportfs -o` or `-u` by hand changes them); if so, a
    /// commit puts them back as the agent's table says. Ends with the exporter.
    fn watch_etab(&self) {
        let (KernelApply::Etab { root, .. }, Some(etab)) = (&self.inner.apply, &self.inner.etab)
        else {
            return;
        };
        let root = root.clone();
        if self.inner.watching.swap(true, Ordering::SeqCst) {
            return;
        }
        let inner: Weak<Inner> = Arc::downgrade(&self.inner);
        let etab = etab.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(ETAB_WATCH);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = inner.upgrade() else {
                    return;
                };
                let Ok(meta) = tokio::fs::metadata(&etab).await else {
                    continue;
                };
                let inode = std::os::unix::fs::MetadataExt::ino(&meta);
                if inode == inner.written_inode.load(Ordering::SeqCst) {
                    continue;
                }
                // Rewritten by another program: harmless if the agent's lines are unchanged
                // (`exportfs -a` keeps them), else they are put back.
                let text = tokio::fs::read_to_string(&etab).await.unwrap_or_default();
                let theirs = agents_lines(&text, &root);
                let ours = inner.state().desired.etab_lines();
                if theirs == ours {
                    inner.written_inode.store(inode, Ordering::SeqCst);
                    continue;
                }
                let ticket = {
                    let mut state = inner.state();
                    state.generation += 1;
                    state.generation
                };
                if let Err(e) = inner.clone().commit_covering(ticket).await {
                    tracing::warn!(error = %e.message, "cannot put the agent's exports back into nfs-utils' table");
                }
            }
        });
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
        if state.desired.get(spec.export_id) == Some(spec) {
            match previous {
                Some(previous) => state.desired.insert(previous),
                None => state.desired.remove(spec.export_id),
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
        let KernelApply::Exportfs {
            exportfs, runner, ..
        } = &self.apply
        else {
            return Err(ExportError::Unavailable(
                "exportfs is not used in the etab mode".into(),
            ));
        };
        self.ensure_etab()?;
        runner
            .run(exportfs, &args)
            .await
            .map_err(|message| ExportError::Refused { export_id, message })
    }

    async fn commit_covering(self: Arc<Self>, ticket: u64) -> Committed {
        let inner = self.clone();
        self.commits
            .wait(ticket, move || async move {
                match &inner.apply {
                    KernelApply::Etab { root, proc_rpc } => {
                        let (root, proc_rpc) = (root.clone(), proc_rpc.clone());
                        inner.commit_etab(root, proc_rpc).await
                    }
                    KernelApply::Exportfs { .. } => inner.commit().await,
                }
            })
            .await
    }

    /// One commit in `etab` mode: the agent's lines of nfs-utils' table rewritten from what is
    /// desired now (the host's own lines kept), under nfs-utils' lock, then the kernel's
    /// caches flushed so that the next request of every client asks `rpc.mountd` again. When
    /// the lines are those the last commit wrote and the table is still its file, nothing is
    /// done: every flush makes `rpc.mountd` read the whole table again at its next upcall
    /// (about 2 s of CPU for 30,000 lines in an emulated VM), and a create without clients or
    /// a grant already there changes no line.
    async fn commit_etab(self: Arc<Self>, root: PathBuf, proc_rpc: PathBuf) -> (u64, Committed) {
        let (covered, version) = {
            let state = self.state();
            (state.generation, state.desired.version)
        };
        let etab = self.etab.clone().expect("the etab mode has a table");
        let started = std::time::Instant::now();
        let inner = self.clone();
        let written = tokio::task::spawn_blocking(move || {
            // Commits never overlap (the group commit's turn), so this lock is never waited on.
            let mut last = inner.written.lock().unwrap_or_else(|e| e.into_inner());
            let now = std::fs::metadata(&etab).ok().map(|m| Stamp::of(&m));
            if last
                .as_ref()
                .is_some_and(|w| w.version == version && Some(w.stamp) == now)
            {
                return Ok(None);
            }
            // The lines as they are now: changes made since `covered` ride along.
            let ours = {
                let state = inner.state();
                (state.desired.version, state.desired.etab_lines())
            };
            let inode = write_etab(&etab, &root, (ours.0, &ours.1), &mut last)?;
            if let Err(e) = flush_export_caches(&proc_rpc) {
                // Not taken for written: the next commit writes and flushes again.
                *last = None;
                return Err(e);
            }
            Ok::<_, String>(Some(inode))
        })
        .await
        .unwrap_or_else(|e| Err(format!("writing nfs-utils' export table: {e}")));
        tracing::debug!(generation = covered, took = ?started.elapsed(), written = matches!(written, Ok(Some(_))), "etab committed");
        match written {
            Ok(inode) => {
                if let Some(inode) = inode {
                    self.written_inode.store(inode, Ordering::SeqCst);
                }
                (covered, Ok(()))
            }
            Err(message) => (
                covered,
                Err(Arc::new(CommitFailure {
                    message,
                    unavailable: true,
                    etab: None,
                })),
            ),
        }
    }

    /// One commit: the exports file rewritten from what is desired now, then one
    /// `exportfs -r`, which makes nfs-utils' table (and through it the kernel's) match the
    /// files, adding, changing and removing exports in one pass. Returns the generation the
    /// file carried.
    async fn commit(self: Arc<Self>) -> (u64, Committed) {
        let KernelApply::Exportfs {
            exportfs,
            exports_file,
            runner,
        } = &self.apply
        else {
            unreachable!("commit_covering sends only the exportfs mode here")
        };
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
        if let Err(e) = write_exports_file(exports_file.clone(), text).await {
            return (covered, failure(e, true, None));
        }
        if let Err(e) = self.ensure_etab() {
            return (covered, failure(e.to_string(), true, None));
        }
        let started = std::time::Instant::now();
        let result = runner.run(exportfs, &["-r".to_string()]).await;
        tracing::debug!(generation = covered, took = ?started.elapsed(), "exportfs -r");
        match result {
            Ok(_) => (covered, Ok(())),
            Err(message) => {
                let etab = self.read_etab().await;
                (covered, failure(message, false, etab))
            }
        }
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

async fn write_exports_file(file: PathBuf, text: String) -> Result<(), String> {
    let shown = file.display().to_string();
    tokio::task::spawn_blocking(move || {
        let dir = file.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(dir)?;
        crate::table::atomic_write(dir, &file, text.as_bytes())
    })
    .await
    .map_err(|e| format!("writing the exports file: {e}"))?
    .map_err(|e| format!("writing {shown}: {e}"))
}

/// How often the `etab` mode checks that nfs-utils' table is still the one it wrote.
const ETAB_WATCH: Duration = Duration::from_secs(2);

/// The temporary file the `etab` mode writes beside the table is `.etab.rwxnfs.<pid>.tmp`
/// (nfs-utils' own is `etab.tmp`, which only its writers, holding the lock, use).
const ETAB_TEMPORARY: &str = "etab.rwxnfs.";

/// The agent's lines of nfs-utils' table: one per export and client, as nfs-utils writes them
/// (`PATH<TAB>CLIENT(OPTIONS)`; `rpc.mountd` reads the table with the exports file parser).
/// An export without clients has no line.
pub fn render_etab<'a>(specs: impl Iterator<Item = &'a ExportSpec>) -> String {
    let mut out = String::new();
    for spec in specs {
        for (client, access) in &spec.clients {
            out.push_str(&format!(
                "\"{}\"\t{}({})\n",
                spec.path.display(),
                client,
                options(spec, *access)
            ));
        }
    }
    out
}

/// The path a line of nfs-utils' table (or of an exports file) starts with: quoted or not, with
/// nfs-utils' octal escapes (`\040` for a space) undone.
pub fn etab_line_path(line: &str) -> Option<String> {
    let line = line.trim_start();
    let raw = if let Some(rest) = line.strip_prefix('"') {
        &rest[..rest.find('"')?]
    } else {
        line.split([' ', '\t']).next().filter(|p| !p.is_empty())?
    };
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                let value = d.iter().fold(0u32, |v, b| v * 8 + u32::from(b - b'0'));
                out.push(u8::try_from(value).ok()?);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// nfs-utils' table as the agent writes it: the host's lines of `current` (those not under
/// `root`; blank ones dropped), then `ours`.
pub fn merge_etab(current: &str, root: &Path, ours: &str) -> String {
    let mut text = host_lines(current, root);
    text.push_str(ours);
    text
}

/// The host's lines of nfs-utils' table `text`: those not under `root`, blank ones dropped.
fn host_lines(text: &str, root: &Path) -> String {
    lines_where(text, |l| !l.trim().is_empty() && !is_agents_line(l, root))
}

/// The agent's lines of nfs-utils' table `text`, each ending in a newline.
fn agents_lines(text: &str, root: &Path) -> String {
    lines_where(text, |l| is_agents_line(l, root))
}

fn lines_where(text: &str, keep: impl Fn(&str) -> bool) -> String {
    text.lines()
        .filter(|l| keep(l))
        .flat_map(|l| [l, "\n"])
        .collect()
}

/// Whether a line of nfs-utils' table is one of the agent's: its path is strictly under
/// `root` (the export root itself, exported by the host, is the host's).
pub fn is_agents_line(line: &str, root: &Path) -> bool {
    etab_line_path(line).is_some_and(|path| {
        let path = Path::new(&path);
        path != root && path.starts_with(root)
    })
}

/// The table this exporter wrote last: its identity and the host's lines in it. While the
/// table is still that file, a commit reuses the host's lines instead of reading 3 MB back
/// and sorting 30,000 lines into the host's and the agent's.
struct Written {
    stamp: Stamp,
    host: String,
    /// The [`Desired::version`] of the agent's lines written.
    version: u64,
}

/// Inode, size and modification time: another program's table (nfs-utils writes a new file
/// and renames it) differs in one of them even where the inode number is reused.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp(u64, u64, i64, i64);

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self(meta.ino(), meta.size(), meta.mtime(), meta.mtime_nsec())
    }
}

/// Rewrites nfs-utils' table `etab`: the host's lines as they are, then `ours`, under the
/// lock nfs-utils' writers and readers take (`.etab.lock`, an fcntl lock, beside it), through
/// a temporary file renamed over it (`rpc.mountd` notices a new table by its inode). Not
/// synced to disk: the kernel and `rpc.mountd` read it from memory, and after a crash the
/// agent writes it anew before the NFS server starts. Returns the new table's inode.
///
/// The host's lines are those of the table `last` wrote while the table is still that one
/// (else read back from it); `last` is left holding what this write wrote, with `version`, the
/// [`Desired::version`] of `ours`.
fn write_etab(
    etab: &Path,
    root: &Path,
    (version, ours): (u64, &str),
    last: &mut Option<Written>,
) -> Result<u64, String> {
    use std::io::Write;
    let dir = etab.parent().unwrap_or(Path::new("/"));
    let shown = etab.display();
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let lock_path = dir.join(".etab.lock");
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| format!("opening {}: {e}", lock_path.display()))?;
    lock_exclusive(&lock).map_err(|e| format!("locking {}: {e}", lock_path.display()))?;
    let now = match std::fs::metadata(etab) {
        Ok(meta) => Some(Stamp::of(&meta)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("reading {shown}: {e}")),
    };
    let host = match last.take() {
        Some(written) if Some(written.stamp) == now => written.host,
        _ => match std::fs::read_to_string(etab) {
            Ok(text) => host_lines(&text, root),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(format!("reading {shown}: {e}")),
        },
    };
    let tmp = dir.join(format!(".{ETAB_TEMPORARY}{}.tmp", std::process::id()));
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(host.as_bytes())?;
            f.write_all(ours.as_bytes())
        })
        .and_then(|()| std::fs::rename(&tmp, etab));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("writing {shown}: {e}"));
    }
    let stamp = std::fs::metadata(etab)
        .map(|m| Stamp::of(&m))
        .map_err(|e| format!("reading {shown}: {e}"))?;
    *last = Some(Written {
        stamp,
        host,
        version,
    });
    drop(lock);
    Ok(stamp.0)
}

/// Waits for an exclusive lock on the whole of `file` that nfs-utils' `xflock` (a POSIX
/// `fcntl` lock) respects: an open file description lock, which conflicts with POSIX locks
/// and, unlike them, also with another thread of this process; released when the file is
/// closed.
fn lock_exclusive(file: &std::fs::File) -> std::io::Result<()> {
    use nix::fcntl::{FcntlArg, fcntl};
    let lock = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        // 0: to the end of the file, however long.
        l_len: 0,
        // Open file description locks require 0.
        l_pid: 0,
    };
    loop {
        match fcntl(file, FcntlArg::F_OFD_SETLKW(&lock)) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Flushes the kernel's caches of client addresses, file handles and exports, in the order
/// nfs-utils does (a cache before the one its entries refer to), so that the next request of
/// every client asks `rpc.mountd`, which reads the new table. A cache the kernel does not have
/// (nfsd not loaded) holds nothing to flush.
pub fn flush_export_caches(proc_rpc: &Path) -> Result<(), String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for cache in ["auth.unix.ip", "auth.unix.gid", "nfsd.fh", "nfsd.export"] {
        let path = proc_rpc.join(cache).join("flush");
        match std::fs::OpenOptions::new().write(true).open(&path) {
            Ok(mut f) => std::io::Write::write_all(&mut f, format!("{}\n", now + 1).as_bytes())
                .map_err(|e| format!("flushing {}: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("flushing {}: {e}", path.display())),
        }
    }
    Ok(())
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

/// The first line of the exports file the `exportfs` mode writes.
pub const EXPORTS_FILE_HEADER: &str =
    "# Generated by rwxnfs agent from its export table. Do not edit.\n";

/// The persistent exports file for these specs (exports(5) syntax).
pub fn render_exports_file<'a>(specs: impl Iterator<Item = &'a ExportSpec>) -> String {
    let mut out = String::from(EXPORTS_FILE_HEADER);
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
            .change(|desired| previous = desired.insert(spec.clone()))
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
                previous.push(state.desired.insert(spec.clone()));
            }
            state.generation += 1;
            state.generation
        };
        match self.commit(ticket).await {
            Ok(()) => {
                self.state().seeded = true;
                self.watch_etab();
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
            .change(|desired| previous = desired.remove(export_id))
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
            if state.desired.get(export_id).is_none() {
                state.desired.insert(previous);
            }
            state.generation += 1;
        }
        Err(failure.error(export_id))
    }

    async fn active(&self) -> Result<Vec<u32>, ExportError> {
        if let (KernelApply::Etab { root, .. }, Some(etab)) = (&self.inner.apply, &self.inner.etab)
        {
            let text = match tokio::fs::read_to_string(etab).await {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => {
                    return Err(ExportError::Unavailable(format!(
                        "reading {}: {e}",
                        etab.display()
                    )));
                }
            };
            return Ok(parse_active(&agents_lines(&text, root)));
        }
        let listing = self.exportfs(vec!["-v".into()], 0).await?;
        Ok(parse_active(&listing))
    }

    async fn probe(&self) -> Result<(), String> {
        if let (KernelApply::Etab { .. }, Some(etab)) = (&self.inner.apply, &self.inner.etab) {
            // The table's directory must take the next commit.
            let dir = etab.parent().unwrap_or(Path::new("/"));
            let problem = |e: &dyn std::fmt::Display| {
                format!("nfs-utils' state directory {}: {e}", dir.display())
            };
            return match std::fs::metadata(dir) {
                Ok(m) if m.is_dir() => nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK)
                    .map_err(|e| problem(&e)),
                Ok(_) => Err(problem(&"not a directory")),
                // Created by the first commit.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(problem(&e)),
            };
        }
        match self.exportfs(vec!["-v".into()], 0).await {
            Ok(_) => Ok(()),
            Err(ExportError::Refused { message, .. }) => Err(message),
            Err(e) => Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests;
