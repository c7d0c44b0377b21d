//! NFS-Ganesha, driven over D-Bus (`org.ganesha.nfsd.exportmgr` on
//! `/org/ganesha/nfsd/ExportMgr`).
//!
//! Each export is one configuration file, `<conf_dir>/export-<id>.conf`. A change is written
//! to a pending file beside it, activated from there with `AddExport(file,
//! "EXPORT(Export_Id=<id>)")`, or with `UpdateExport` when the id is already active (which is
//! how client lists change), and only then renamed over the export's file. So an export file
//! always says what Ganesha serves, whether Ganesha read it at its start or took it over
//! D-Bus: a reconcile (an agent restart, a takeover) calls Ganesha only for exports that are
//! not active or whose file differs from the table, and a change that failed, or that a
//! killed agent left half-done, leaves the old file and is made again. Pending files left by a
//! killed agent are removed when the exporter starts. The exporter remembers which
//! ids are active (from `ShowExports` at the first call, on every probe and reconcile, and
//! from its own calls) so that it asks for the right one: Ganesha logs every refused call as a
//! MAJ error, and "already active" on each grant would bury real ones in an operator's log.
//! Should that memory be stale (Ganesha restarted, someone used `ganesha_mgr`), the other call
//! follows on exactly the refusal that says so. `<conf_dir>/exports.conf` includes every
//! export file (through shard files, [`include`], of which a change rewrites one), so a
//! Ganesha that restarts (or starts on the next host after a failover) comes back with every
//! export when its main configuration says:
//!
//! ```text
//! %include "/drbd/exports/.rwxnfs/ganesha/exports.conf"
//! ```
//!
//! An export's top-level `Access_Type = None` and one `CLIENT` block per access mode means a
//! client not listed gets nothing: NFSv4 clients do not even see the export.
//!
//! Ganesha has exactly the exports that have clients. One without any (a claim created and
//! not yet published, or no longer published anywhere, with no `allowedClients`) is not given
//! to Ganesha: it has no file, and it is added with its first client and removed with its
//! last. Ganesha 4's `AddExport` walks every active export by path and pseudo path, so each
//! one costs more the more Ganesha has (1 ms with none, 5 ms with 10,000 in the lab): creating
//! claims slowed as they accumulated. That cost now falls on a claim's publish and grows with
//! the claims in use, not with every claim that exists, and a Ganesha that starts after a
//! failover reads only those. The kernel exporter has no line for such an export either.

mod include;

use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use tokio::sync::Mutex;
use zbus::Connection;

use super::{ExportError, ExportSpec, Exporter};
use crate::table::{Access, Squash};

const OBJECT: &str = "/org/ganesha/nfsd/ExportMgr";
const INTERFACE: &str = "org.ganesha.nfsd.exportmgr";
const SERVICE: &str = "org.ganesha.nfsd";
/// Upper bound of one D-Bus call: Ganesha answers in milliseconds when it is healthy.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Calls to Ganesha in flight at once; more wait their turn. The system bus refuses a
/// connection's call past 128 awaiting replies (dbus-daemon's `max_replies_per_connection`),
/// which 500 pods of a new Deployment published at once would pass.
const MAX_CALLS_IN_FLIGHT: usize = 32;
use include::Include;
pub use include::{INCLUDE_FILE, SHARDS};

#[derive(Clone, Debug)]
pub struct GaneshaSettings {
    /// The bus Ganesha listens on; None: the system bus.
    pub dbus_address: Option<String>,
    /// Ganesha's `Dbus_Name_Prefix`, when several instances share a bus.
    pub name_prefix: Option<String>,
    /// Where export files and the include file live (on the replicated state directory).
    pub conf_dir: PathBuf,
    /// NFS versions to export with: 4, or 3 and 4.
    pub protocols: Vec<u8>,
}

/// The configuration of a private, system-type D-Bus listening on `socket`, for running
/// Ganesha outside the host's own bus (`rwxnfs dev`, tests): root may own names and talk. Not
/// in the image's build: only the lab (feature `private-bus`) and tests have it.
#[cfg(any(test, feature = "test-support", feature = "private-bus"))]
pub fn private_bus_config(socket: &Path) -> String {
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="root"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"#,
        socket.display()
    )
}

pub struct GaneshaExporter {
    settings: GaneshaSettings,
    service: String,
    connection: Mutex<Option<Connection>>,
    /// The files that name every export file, for a Ganesha that starts.
    include: Include,
    /// AddExport and UpdateExport calls made, for tests and benchmarks.
    activations: AtomicU64,
    /// Which export ids Ganesha has active, as far as this exporter knows.
    known: std::sync::Mutex<Known>,
    /// Bounds the calls awaiting Ganesha's reply ([`MAX_CALLS_IN_FLIGHT`]).
    in_flight: tokio::sync::Semaphore,
}

/// The ids Ganesha has active: None until a `ShowExports` has said (and again after the
/// connection broke, as Ganesha may have restarted). `changes` counts this exporter's own
/// Add/Update/Remove calls, so a `ShowExports` answer that raced one of them is not taken
/// over the newer knowledge.
#[derive(Default)]
struct Known {
    ids: Option<HashSet<u32>>,
    changes: u64,
}

/// The first call for an export, and the refusal that means "the other one".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Activate {
    Add,
    Update,
}

impl Activate {
    fn method(self) -> &'static str {
        match self {
            Activate::Add => "AddExport",
            Activate::Update => "UpdateExport",
        }
    }

    fn other(self) -> Self {
        match self {
            Activate::Add => Activate::Update,
            Activate::Update => Activate::Add,
        }
    }

    /// Whether Ganesha refused this call because the id is (Add) or is not (Update) active:
    /// "Selected entries in <file> already active!!!" / "... Export id not found".
    fn refused_as_stale(self, e: &zbus::Error) -> bool {
        let zbus::Error::MethodError(_, Some(detail), _) = e else {
            return false;
        };
        match self {
            Activate::Add => detail.contains("already active"),
            Activate::Update => detail.contains("not found"),
        }
    }
}

/// One row of ShowExports: id, path, per-protocol flags, last-change time.
type ShowRow = (
    u16,
    String,
    (
        (String, bool),
        (String, bool),
        (String, bool),
        (String, bool),
        (String, bool),
        (String, bool),
        (String, bool),
        (String, bool),
    ),
    (u64, u64),
);

fn unavailable(e: impl std::fmt::Display) -> ExportError {
    ExportError::Unavailable(e.to_string())
}

/// Refuses anything that could break out of a quoted Ganesha configuration value.
fn check_value(what: &str, value: &str, export_id: u32) -> Result<(), ExportError> {
    if value.is_empty()
        || value.chars().any(|c| {
            matches!(
                c,
                '"' | '{' | '}' | ';' | '\n' | '\r' | '\\' | '\0' | '#' | '%'
            )
        })
    {
        return Err(ExportError::Refused {
            export_id,
            message: format!(
                "{what} {value:?} contains characters that cannot appear in a Ganesha export"
            ),
        });
    }
    Ok(())
}

/// The export file for `spec`.
pub fn render(spec: &ExportSpec, protocols: &[u8]) -> Result<String, ExportError> {
    let id = spec.export_id;
    let path = spec.path.to_string_lossy();
    check_value("path", &path, id)?;
    check_value("pseudo path", &spec.pseudo_path, id)?;
    let squash = match spec.squash {
        Squash::None => "No_Root_Squash",
        Squash::Root => "Root_Squash",
        Squash::All => "All_Squash",
    };
    let protocols: Vec<String> = protocols.iter().map(u8::to_string).collect();
    let mut out = format!(
        "# Generated by rwxnfs agent from its export table. Do not edit.\nEXPORT {{\n    Export_Id = {id};\n    Path = \"{path}\";\n    Pseudo = \"{}\";\n    Protocols = {};\n    Transports = TCP;\n    Access_Type = None;\n    Squash = {squash};\n    SecType = sys;\n    FSAL {{ Name = VFS; }}\n",
        spec.pseudo_path,
        protocols.join(", ")
    );
    let mut by_access: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (client, access) in &spec.clients {
        let mode = match access {
            Access::Rw => "RW",
            Access::Ro => "RO",
        };
        by_access.entry(mode).or_default().push(client.to_string());
    }
    for (mode, clients) in by_access {
        out.push_str(&format!(
            "    CLIENT {{ Clients = {}; Access_Type = {mode}; }}\n",
            clients.join(", ")
        ));
    }
    out.push_str("}\n");
    Ok(out)
}

impl GaneshaExporter {
    /// Also makes the include files ([`include`]) when they are not there yet: NFS-Ganesha
    /// refuses to start on a configuration whose `%include` names a missing file, which on a
    /// new cluster would keep it down until the first export.
    pub fn new(settings: GaneshaSettings) -> Result<Self, ExportError> {
        let io = |source| ExportError::Io {
            export_id: 0,
            source,
        };
        std::fs::create_dir_all(&settings.conf_dir).map_err(io)?;
        // Every file there is this exporter's: what a killed agent was writing goes.
        crate::table::remove_leftover_temporaries(&settings.conf_dir, "");
        let include = Include::open(&settings.conf_dir).map_err(io)?;
        let service = match &settings.name_prefix {
            Some(prefix) => format!("{prefix}.{SERVICE}"),
            None => SERVICE.to_owned(),
        };
        Ok(Self {
            settings,
            service,
            connection: Mutex::new(None),
            include,
            activations: AtomicU64::new(0),
            known: std::sync::Mutex::default(),
            in_flight: tokio::sync::Semaphore::new(MAX_CALLS_IN_FLIGHT),
        })
    }

    pub fn export_file(&self, export_id: u32) -> PathBuf {
        self.settings
            .conf_dir
            .join(format!("export-{export_id}.conf"))
    }

    async fn connection(&self) -> Result<Connection, ExportError> {
        let mut guard = self.connection.lock().await;
        if let Some(conn) = guard.as_ref() {
            return Ok(conn.clone());
        }
        let connect = async {
            match &self.settings.dbus_address {
                Some(address) => {
                    zbus::connection::Builder::address(address.as_str())?
                        .build()
                        .await
                }
                None => Connection::system().await,
            }
        };
        let conn = tokio::time::timeout(CALL_TIMEOUT, connect)
            .await
            .map_err(|_| unavailable("connecting to D-Bus timed out"))?
            .map_err(|e| unavailable(format!("cannot connect to D-Bus: {e}")))?;
        *guard = Some(conn.clone());
        Ok(conn)
    }

    /// Calls an exportmgr method. A transport failure drops the connection so the next call
    /// reconnects (Ganesha or the bus may have restarted).
    async fn call<B>(&self, method: &str, body: &B) -> Result<zbus::Message, zbus::Error>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        let conn = self
            .connection()
            .await
            .map_err(|e| zbus::Error::Failure(e.to_string()))?;
        let _turn = self
            .in_flight
            .acquire()
            .await
            .map_err(|e| zbus::Error::Failure(e.to_string()))?;
        let call = conn.call_method(
            Some(self.service.as_str()),
            OBJECT,
            Some(INTERFACE),
            method,
            body,
        );
        let result = match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(result) => result,
            Err(_) => Err(zbus::Error::Failure(format!(
                "{method} did not answer within {CALL_TIMEOUT:?}"
            ))),
        };
        if let Err(e) = &result
            && !matches!(e, zbus::Error::MethodError(..))
        {
            *self.connection.lock().await = None;
            self.known().ids = None;
        }
        result
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records what one of this exporter's own calls did to `export_id`.
    fn mark(&self, export_id: u32, active: bool) {
        let mut known = self.known();
        known.changes += 1;
        if let Some(ids) = known.ids.as_mut() {
            if active {
                ids.insert(export_id);
            } else {
                ids.remove(&export_id);
            }
        }
    }

    /// Which call activates `export_id`: Update when it is known to be active. Asks Ganesha
    /// first when nothing is known yet; when that fails, Add (and Update on its refusal).
    async fn activate_with(&self, export_id: u32) -> Activate {
        if self.is_active(export_id, false).await {
            Activate::Update
        } else {
            Activate::Add
        }
    }

    /// Whether Ganesha has `export_id` active: what this exporter knows, or, when it knows
    /// nothing yet, what `ShowExports` says; `when_unknown` when that fails too.
    async fn is_active(&self, export_id: u32, when_unknown: bool) -> bool {
        let known = self
            .known()
            .ids
            .as_ref()
            .map(|ids| ids.contains(&export_id));
        if let Some(active) = known {
            return active;
        }
        match self.active().await {
            Ok(ids) => ids.contains(&export_id),
            Err(e) => {
                tracing::debug!(export_id, error = %e, assumed = when_unknown, "ShowExports failed");
                when_unknown
            }
        }
    }

    fn refused_or_unavailable(&self, export_id: u32, e: zbus::Error) -> ExportError {
        match e {
            zbus::Error::MethodError(name, detail, _)
                if !name
                    .as_str()
                    .starts_with("org.freedesktop.DBus.Error.ServiceUnknown") =>
            {
                ExportError::Refused {
                    export_id,
                    message: format!("{name}: {}", detail.unwrap_or_default()),
                }
            }
            other => unavailable(format!(
                "Ganesha ({}) is not answering: {other}",
                self.service
            )),
        }
    }

    async fn write_pending(path: PathBuf, text: String, export_id: u32) -> Result<(), ExportError> {
        let target = path.clone();
        tokio::task::spawn_blocking(move || write_synced(&target, text.as_bytes()))
            .await
            .map_err(unavailable)?
            .map_err(|e| ExportError::Io {
                export_id,
                source: writing(&path, &e),
            })
    }

    /// Renames the pending files of the exports Ganesha took over their export files, then
    /// rewrites the include files once for all of them.
    async fn promote_and_include(
        &self,
        promoted: Vec<(PathBuf, PathBuf)>,
        files: &[(u32, PathBuf)],
        results: &[Result<(), ExportError>],
    ) -> std::io::Result<()> {
        tokio::task::spawn_blocking(move || promote(&promoted))
            .await
            .map_err(std::io::Error::other)??;
        for ((id, _), result) in files.iter().zip(results) {
            if result.is_ok() {
                self.include.note(*id, true);
            }
        }
        self.include.write().await
    }

    /// How many AddExport and UpdateExport calls this exporter has made.
    pub fn activations(&self) -> u64 {
        self.activations.load(Ordering::Relaxed)
    }

    /// Makes the export in `file` active: AddExport, or UpdateExport when it already is.
    async fn activate(&self, id: u32, file: &Path) -> Result<(), ExportError> {
        self.activations.fetch_add(1, Ordering::Relaxed);
        let body = (
            file.to_string_lossy().into_owned(),
            format!("EXPORT(Export_Id={id})"),
        );
        let first = self.activate_with(id).await;
        let result = match self.call(first.method(), &body).await {
            Err(e) if first.refused_as_stale(&e) => {
                tracing::debug!(export_id = id, refused = %e, "Ganesha's active exports were not as remembered");
                self.call(first.other().method(), &body).await
            }
            other => other,
        };
        result.map_err(|e| self.refused_or_unavailable(id, e))?;
        self.mark(id, true);
        Ok(())
    }
}

/// What [`write_if_changed`] did.
enum Written {
    /// The export file already says exactly that.
    Unchanged,
    /// The new text is in this pending file, to activate and then rename over the export file.
    Pending(PathBuf),
    /// An export without clients: Ganesha should not have it. Whether its file is there.
    NoClients { file: bool },
}

/// Writes `spec`'s export text to a pending file, unless the export file already says exactly
/// that or `spec` admits nobody (then nothing is written: Ganesha should not have it).
fn write_if_changed(
    spec: &ExportSpec,
    protocols: &[u8],
    path: &Path,
) -> Result<Written, ExportError> {
    let id = spec.export_id;
    if spec.clients.is_empty() {
        return Ok(Written::NoClients {
            file: path.exists(),
        });
    }
    let text = render(spec, protocols)?;
    if std::fs::read(path).is_ok_and(|old| old == text.as_bytes()) {
        return Ok(Written::Unchanged);
    }
    let pending = pending_file(path);
    write_synced(&pending, text.as_bytes())
        .map(|()| Written::Pending(pending))
        .map_err(|e| ExportError::Io {
            export_id: id,
            source: writing(path, &e),
        })
}

/// Where a change to export file `file` waits until Ganesha has taken it. Named like a
/// temporary file, so one a killed agent left is removed when the exporter starts.
fn pending_file(file: &Path) -> PathBuf {
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    file.with_file_name(format!(".{name}.pending.tmp"))
}

/// `e`, met writing `path`, with the path in its message and its kind kept (a full or read-only
/// state directory is told apart by kind: [`crate::table::Failure`]).
fn writing(path: &Path, e: &std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("writing {}: {e}", path.display()))
}

/// Writes a pending file with its content on disk: once it is renamed over the export file,
/// the export file is whole after a crash, whichever of the two it then is. Neither the write
/// nor the rename waits for the directory to reach the disk. The table is the truth, and a
/// reconcile makes again any change whose file is found older than the table.
/// A write that fails (a full filesystem) leaves no file behind.
fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let written = std::fs::File::create(path).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_data()
    });
    if written.is_err() {
        let _ = std::fs::remove_file(path);
    }
    written
}

/// Renames each pending file over its export file.
fn promote(files: &[(PathBuf, PathBuf)]) -> std::io::Result<()> {
    for (pending, file) in files {
        std::fs::rename(pending, file).map_err(|e| writing(file, &e))?;
    }
    Ok(())
}

#[tonic::async_trait]
impl Exporter for GaneshaExporter {
    fn kind(&self) -> &'static str {
        "ganesha"
    }

    async fn apply(&self, spec: &ExportSpec) -> Result<(), ExportError> {
        let id = spec.export_id;
        let file = self.export_file(id);
        // Rendered first so that a path or pseudo path Ganesha could not take is refused
        // also while the export has no client.
        let text = render(spec, &self.settings.protocols)?;
        if spec.clients.is_empty() {
            // Nobody may reach it: Ganesha has it only from its first client to its last.
            return self.remove(id).await;
        }
        // Calls for one export never overlap (the agent holds its lock), so this answer holds
        // until the rename below.
        let existed = tokio::fs::try_exists(&file).await.unwrap_or(false);
        let pending = pending_file(&file);
        Self::write_pending(pending.clone(), text, id).await?;
        if let Err(e) = self.activate(id, &pending).await {
            let _ = tokio::fs::remove_file(&pending).await;
            return Err(e);
        }
        let promoted = vec![(pending, file)];
        tokio::task::spawn_blocking(move || promote(&promoted))
            .await
            .map_err(unavailable)?
            .map_err(|e| ExportError::Io {
                export_id: id,
                source: e,
            })?;
        // A new client list changes the export's own file only; the include file names files.
        if !existed || self.include.stale() {
            self.include.note(id, true);
            self.include
                .write()
                .await
                .map_err(|source| ExportError::Io {
                    export_id: id,
                    source,
                })?;
        }
        Ok(())
    }

    /// Every changed export file written (as a pending file) in one blocking pass; one Add or
    /// Update per export that is not active or whose file changed (which is how Ganesha takes
    /// exports over D-Bus), the files of those Ganesha took renamed into place in one pass,
    /// and the include file rewritten once. After a failover (Ganesha starts on the new host
    /// with every export) or an agent restart, nothing is called for an unchanged table.
    async fn apply_all(&self, specs: &[ExportSpec]) -> Vec<Result<(), ExportError>> {
        let protocols = self.settings.protocols.clone();
        let files: Vec<(u32, PathBuf)> = specs
            .iter()
            .map(|s| (s.export_id, self.export_file(s.export_id)))
            .collect();
        let active: HashSet<u32> = match self.active().await {
            Ok(active) => active.into_iter().collect(),
            Err(e) => {
                tracing::debug!(error = %e, "ShowExports failed; activating every export");
                HashSet::new()
            }
        };
        let owned: Vec<ExportSpec> = specs.to_vec();
        let targets = files.clone();
        let written = tokio::task::spawn_blocking(move || {
            owned
                .iter()
                .zip(targets)
                .map(|(spec, (_, path))| write_if_changed(spec, &protocols, &path))
                .collect::<Vec<_>>()
        })
        .await;
        let written = match written {
            Ok(written) => written,
            Err(e) => {
                return specs
                    .iter()
                    .map(|_| Err(unavailable(format!("writing export files: {e}"))))
                    .collect();
            }
        };
        let mut results = Vec::with_capacity(specs.len());
        let mut promote_now = Vec::new();
        let mut skipped = 0;
        let mut unserved = 0;
        for (written, (id, file)) in written.into_iter().zip(&files) {
            results.push(match written {
                Ok(Written::NoClients { file }) if !file && !active.contains(id) => {
                    unserved += 1;
                    Ok(())
                }
                // Its last client went and a killed agent did not finish taking it back.
                Ok(Written::NoClients { .. }) => self.remove(*id).await,
                Ok(Written::Unchanged) if active.contains(id) => {
                    skipped += 1;
                    Ok(())
                }
                Ok(Written::Unchanged) => self.activate(*id, file).await,
                Ok(Written::Pending(pending)) => match self.activate(*id, &pending).await {
                    Ok(()) => {
                        promote_now.push((pending, file.clone()));
                        Ok(())
                    }
                    Err(e) => {
                        let _ = tokio::fs::remove_file(&pending).await;
                        Err(e)
                    }
                },
                Err(e) => Err(e),
            });
        }
        tracing::debug!(
            skipped,
            unserved,
            of = specs.len(),
            "exports Ganesha already serves as their files say, and exports without clients"
        );
        if let Err(e) = self
            .promote_and_include(promote_now, &files, &results)
            .await
        {
            let message = e.to_string();
            for (result, (id, _)) in results.iter_mut().zip(&files) {
                if result.is_ok() {
                    *result = Err(ExportError::Io {
                        export_id: *id,
                        source: std::io::Error::new(e.kind(), message.clone()),
                    });
                }
            }
        }
        results
    }

    async fn remove(&self, export_id: u32) -> Result<(), ExportError> {
        let file = self.export_file(export_id);
        if !tokio::fs::try_exists(&file).await.unwrap_or(true)
            && !self.is_active(export_id, true).await
        {
            // Not given to Ganesha (no client since it was made or taken back): nothing to do.
            return Ok(());
        }
        match self.call("RemoveExport", &(export_id as u16,)).await {
            Ok(_) => {}
            Err(zbus::Error::MethodError(_, Some(detail), _)) if detail.contains("not found") => {}
            Err(e) => return Err(self.refused_or_unavailable(export_id, e)),
        }
        self.mark(export_id, false);
        // The include files stop naming the file (synced) before it goes: a crash in between
        // leaves a file nobody includes, never an include of a missing file.
        self.include.note(export_id, false);
        self.include
            .write()
            .await
            .map_err(|source| ExportError::Io { export_id, source })?;
        match tokio::fs::remove_file(&file).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(ExportError::Io { export_id, source }),
        }
    }

    async fn active(&self) -> Result<Vec<u32>, ExportError> {
        let changes = self.known().changes;
        let reply = self
            .call("ShowExports", &())
            .await
            .map_err(|e| self.refused_or_unavailable(0, e))?;
        let (_, rows): ((u64, u64), Vec<ShowRow>) = reply
            .body()
            .deserialize()
            .map_err(|e| unavailable(format!("unexpected ShowExports reply: {e}")))?;
        let ids: Vec<u32> = rows
            .into_iter()
            .map(|r| u32::from(r.0))
            .filter(|id| *id != 0)
            .collect();
        let mut known = self.known();
        if known.changes == changes {
            known.ids = Some(ids.iter().copied().collect());
        }
        Ok(ids)
    }

    async fn probe(&self) -> Result<(), String> {
        self.active().await.map(|_| ()).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exporter::Client;

    fn spec(clients: Vec<(Client, Access)>) -> ExportSpec {
        ExportSpec {
            export_id: 101,
            path: "/drbd/exports/volumes/pvc-1".into(),
            pseudo_path: "/pvc-1".into(),
            clients,
            squash: Squash::Root,
            transport: rwxnfs_model::Transport::None,
        }
    }

    #[test]
    fn an_export_lists_its_clients_by_access_mode() {
        let text = render(
            &spec(vec![
                (Client::Address("10.0.0.1".parse().unwrap()), Access::Rw),
                (Client::Network("10.9.0.0/16".parse().unwrap()), Access::Rw),
                (Client::Address("10.0.0.2".parse().unwrap()), Access::Ro),
            ]),
            &[4],
        )
        .unwrap();
        assert!(text.contains("Export_Id = 101;"), "{text}");
        assert!(text.contains("Path = \"/drbd/exports/volumes/pvc-1\";"));
        assert!(text.contains("Pseudo = \"/pvc-1\";"));
        assert!(text.contains("Access_Type = None;"));
        assert!(
            text.contains("CLIENT { Clients = 10.0.0.1, 10.9.0.0/16; Access_Type = RW; }"),
            "{text}"
        );
        assert!(text.contains("CLIENT { Clients = 10.0.0.2; Access_Type = RO; }"));
    }

    #[test]
    fn an_export_without_clients_admits_nobody() {
        let text = render(&spec(vec![]), &[3, 4]).unwrap();
        assert!(!text.contains("CLIENT"));
        assert!(text.contains("Protocols = 3, 4;"));
    }

    #[test]
    fn configuration_syntax_cannot_be_injected() {
        for bad in [
            "/x\"; Access_Type = RW; #",
            "/x}\nEXPORT {",
            "/x;y",
            "/a\\b",
            "%include /etc",
        ] {
            let mut s = spec(vec![]);
            s.path = bad.into();
            assert!(render(&s, &[4]).is_err(), "{bad:?}");
            let mut s = spec(vec![]);
            s.pseudo_path = bad.into();
            assert!(render(&s, &[4]).is_err(), "{bad:?}");
        }
    }
}
