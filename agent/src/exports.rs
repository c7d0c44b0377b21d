//! The export lifecycle: create, expand, delete, get and list.
//!
//! Each mutating operation reads validate → lock → act, and writes the table before and after
//! the step that can be interrupted, so a crash leaves a record whose state says what to
//! finish or roll back (see [`crate::reconcile`]).

use std::{net::IpAddr, path::PathBuf, sync::Arc};

use ipnet::IpNet;
use rwxnfs_model::Name;
use tokio::sync::{Mutex, Notify};

use crate::{
    error::{AgentError, blocking},
    exporter::{Client, ExportError, ExportSpec, Exporter},
    fs::{Ownership, RelPath, VolumeFs, round_up},
    locks::{NameGuard, NameLocks},
    table::{
        Access, ExportRecord, OnDelete, OptionsRecord, RecordState, SourceRecord, Squash, Table,
        now_unix_ms,
    },
};

/// Larger requests are refused outright (1 EiB): they can only be mistakes.
pub const MAX_EXPORT_BYTES: u64 = 1 << 60;

/// Export ids reserved at a time. At most this many minus one are skipped when the agent
/// stops; ids are 32-bit (Ganesha's are 16-bit: 65,535 exports, or about 2,000 restarts with
/// every block unused).
const ID_BLOCK: u32 = 32;

/// What the agent applies when a request leaves something unset.
#[derive(Clone, Debug)]
pub struct Settings {
    pub default_size: u64,
    pub default_squash: Squash,
    pub default_uid: u32,
    pub default_gid: u32,
    pub default_mode: u32,
    pub default_on_delete: OnDelete,
    /// Addresses that may ever be granted access; empty means any.
    pub allowed_clients: Vec<IpNet>,
    /// Addresses clients mount from (the VIPs).
    pub server_addresses: Vec<IpAddr>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            default_size: 1 << 30,
            default_squash: Squash::Root,
            default_uid: 0,
            default_gid: 0,
            default_mode: 0o2775,
            default_on_delete: OnDelete::Delete,
            allowed_clients: Vec::new(),
            server_addresses: Vec::new(),
        }
    }
}

/// Requested options, before defaults are applied.
#[derive(Clone, Debug, Default)]
pub struct OptionsRequest {
    pub squash: Option<Squash>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mode: Option<u32>,
    pub allowed_clients: Vec<String>,
    pub on_delete: Option<OnDelete>,
    pub transport: rwxnfs_model::Transport,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceRequest {
    Snapshot(String),
    Export(String),
}

#[derive(Clone, Debug, Default)]
pub struct CreateRequest {
    pub name: String,
    pub required_bytes: i64,
    pub limit_bytes: i64,
    pub options: OptionsRequest,
    pub source: Option<SourceRequest>,
}

/// The agent: the table, the filesystem and the NFS server, kept in step.
pub struct ExportAgent {
    pub(crate) settings: Settings,
    pub(crate) table: Table,
    pub(crate) fs: Arc<dyn VolumeFs>,
    pub(crate) exporter: Arc<dyn Exporter>,
    pub(crate) locks: NameLocks,
    /// Export ids reserved in the table and not handed out yet. Reserving a block at a time
    /// keeps the counter's durable write (two fsyncs, serialised) off most creates.
    ids: Mutex<std::ops::Range<u32>>,
    /// Wakes the background task that empties the trash.
    pub(crate) purge: Arc<Notify>,
    /// Grants waiting for their export's lock, applied together by whoever holds it.
    pub(crate) grants: crate::access::PendingGrants,
}

pub(crate) fn export_key(name: &Name) -> String {
    format!("export/{name}")
}

pub(crate) fn snapshot_key(name: &Name) -> String {
    format!("snapshot/{name}")
}

/// Validates a name from a request, naming the field when it is wrong.
pub(crate) fn parse_name(raw: &str, field: &str) -> Result<Name, AgentError> {
    Name::parse(raw).map_err(|e| AgentError::InvalidArgument(format!("{field}: {e}")))
}

impl ExportAgent {
    pub fn new(
        settings: Settings,
        table: Table,
        fs: Arc<dyn VolumeFs>,
        exporter: Arc<dyn Exporter>,
    ) -> Self {
        Self {
            settings,
            table,
            fs,
            exporter,
            locks: NameLocks::default(),
            ids: Mutex::new(0..0),
            purge: Arc::new(Notify::new()),
            grants: Default::default(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn fs(&self) -> &Arc<dyn VolumeFs> {
        &self.fs
    }

    pub fn exporter(&self) -> &Arc<dyn Exporter> {
        &self.exporter
    }

    /// Empties the trash whenever something is deleted, and once at start (a restart finishes
    /// the deletes a crash interrupted). Runs until the runtime stops.
    pub fn spawn_purger(&self) -> tokio::task::JoinHandle<()> {
        let fs = self.fs.clone();
        let notify = self.purge.clone();
        notify.notify_one();
        tokio::spawn(async move {
            loop {
                notify.notified().await;
                let fs = fs.clone();
                match blocking(move || fs.purge_trash()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "trash emptied"),
                    Err(e) => {
                        tracing::error!(error = %e, "emptying the trash failed; will retry on the next delete")
                    }
                }
            }
        })
    }

    /// The server-side view of a record.
    pub(crate) fn spec(&self, record: &ExportRecord) -> ExportSpec {
        let mut clients: Vec<(Client, Access)> = record
            .options
            .allowed_clients
            .iter()
            .map(|net| (Client::Network(*net), Access::Rw))
            .collect();
        for client in &record.clients {
            for addr in &client.addresses {
                clients.push((Client::Address(*addr), client.access));
            }
        }
        ExportSpec {
            export_id: record.export_id,
            path: self.fs.root().join(&record.path),
            pseudo_path: record.pseudo_path.clone(),
            clients,
            squash: record.options.squash,
            transport: record.options.transport,
        }
    }

    pub(crate) async fn lock_export(&self, name: &Name) -> NameGuard<'_> {
        self.locks.lock(export_key(name)).await
    }

    pub(crate) async fn put_export(
        &self,
        record: ExportRecord,
    ) -> Result<ExportRecord, AgentError> {
        let table = self.table.clone();
        blocking(move || table.put_export(&record).map(|()| record)).await
    }

    pub(crate) async fn get_record(&self, name: &Name) -> Result<Option<ExportRecord>, AgentError> {
        let table = self.table.clone();
        let name = name.clone();
        blocking(move || table.export(&name)).await
    }

    /// Whether the table can be written ([`Table::check_writable`]); Probe asks.
    pub async fn check_state(&self) -> Result<(), AgentError> {
        let table = self.table.clone();
        blocking(move || table.check_writable()).await
    }

    async fn allocate_export_id(&self) -> Result<u32, AgentError> {
        let mut ids = self.ids.lock().await;
        if ids.is_empty() {
            let table = self.table.clone();
            *ids = blocking(move || table.reserve_export_ids(ID_BLOCK)).await?;
        }
        let id = ids.start;
        ids.start += 1;
        Ok(id)
    }

    /// Resolves the options a request asks for, defaults applied.
    fn resolve_options(&self, req: &OptionsRequest) -> Result<OptionsRecord, AgentError> {
        let mode = req.mode.unwrap_or(self.settings.default_mode);
        if mode > 0o7777 {
            return Err(AgentError::InvalidArgument(format!(
                "options.mode: {mode:o} is not a permission mode (at most 7777 octal)"
            )));
        }
        let mut allowed_clients = Vec::with_capacity(req.allowed_clients.len());
        for raw in &req.allowed_clients {
            let net = raw
                .parse::<IpNet>()
                .or_else(|_| raw.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    AgentError::InvalidArgument(format!(
                        "options.allowed_clients: {raw:?} is not an address or CIDR"
                    ))
                })?;
            self.check_allowed(&net)?;
            allowed_clients.push(net.trunc());
        }
        allowed_clients.sort();
        allowed_clients.dedup();
        Ok(OptionsRecord {
            squash: req.squash.unwrap_or(self.settings.default_squash),
            uid: req.uid.unwrap_or(self.settings.default_uid),
            gid: req.gid.unwrap_or(self.settings.default_gid),
            mode,
            allowed_clients,
            on_delete: req.on_delete.unwrap_or(self.settings.default_on_delete),
            transport: req.transport,
        })
    }

    /// Refuses networks outside the agent's configured `allowedClients`.
    pub(crate) fn check_allowed(&self, net: &IpNet) -> Result<(), AgentError> {
        let allowed = &self.settings.allowed_clients;
        if allowed.is_empty() || allowed.iter().any(|a| a.contains(net)) {
            Ok(())
        } else {
            Err(AgentError::PermissionDenied(format!(
                "{net} is outside the agent's allowedClients ({})",
                allowed
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    }

    /// The capacity to create: at least `required`, at most `limit` (0 = unset), rounded up to
    /// the quota's granularity.
    pub(crate) fn capacity_for(
        &self,
        required: i64,
        limit: i64,
        floor: u64,
    ) -> Result<u64, AgentError> {
        if required < 0 || limit < 0 {
            return Err(AgentError::InvalidArgument(format!(
                "capacity: required_bytes {required} and limit_bytes {limit} must not be negative"
            )));
        }
        let (required, limit) = (required as u64, limit as u64);
        if limit > 0 && required > limit {
            return Err(AgentError::OutOfRange(format!(
                "capacity: required_bytes {required} exceeds limit_bytes {limit}"
            )));
        }
        let wanted = match (required, limit) {
            (0, 0) => self.settings.default_size.max(floor),
            (0, limit) => self.settings.default_size.min(limit).max(floor),
            (required, _) => required.max(floor),
        };
        let granularity = self.fs.granularity();
        let mut capacity = round_up(wanted, granularity);
        if limit > 0 && capacity > limit {
            // Round down instead, if that still satisfies the request.
            capacity = limit / granularity.max(1) * granularity.max(1);
            if capacity < wanted || capacity == 0 {
                return Err(AgentError::OutOfRange(format!(
                    "capacity: no multiple of {granularity} bytes lies between {wanted} and limit_bytes {limit}"
                )));
            }
        }
        if capacity > MAX_EXPORT_BYTES {
            return Err(AgentError::OutOfRange(format!(
                "capacity: {capacity} bytes is more than the {MAX_EXPORT_BYTES} an export may have"
            )));
        }
        Ok(capacity)
    }

    /// CreateExport. Idempotent by name.
    pub async fn create_export(&self, req: CreateRequest) -> Result<ExportRecord, AgentError> {
        let name = parse_name(&req.name, "name")?;
        let options = self.resolve_options(&req.options)?;
        self.exporter
            .supports(options.transport)
            .map_err(|why| AgentError::FailedPrecondition(format!("options.transport: {why}")))?;
        let source = match &req.source {
            None => None,
            Some(SourceRequest::Export(s)) => Some((parse_name(s, "source.export_name")?, false)),
            Some(SourceRequest::Snapshot(s)) => {
                Some((parse_name(s, "source.snapshot_name")?, true))
            }
        };
        // Validate sizes before taking any lock (the source's size is checked later).
        self.capacity_for(req.required_bytes, req.limit_bytes, 0)?;

        let mut keys = vec![export_key(&name)];
        match &source {
            Some((s, false)) => keys.push(export_key(s)),
            Some((s, true)) => keys.push(snapshot_key(s)),
            None => {}
        }
        let _guards = self.locks.lock_all(keys).await;

        let source_record = source.as_ref().map(|(s, is_snapshot)| {
            if *is_snapshot {
                SourceRecord::Snapshot(s.to_string())
            } else {
                SourceRecord::Export(s.to_string())
            }
        });
        match self.get_record(&name).await? {
            // This call holds the name's lock, so no create of it is in flight here: a
            // `creating` record is what a killed agent (or a roll-back that failed) left.
            // Rolling it back now, as reconcile would, lets the caller's retry succeed
            // without waiting for reconcile.
            Some(leftover) if leftover.state == RecordState::Creating => {
                tracing::info!(export = %name, export_id = leftover.export_id, "rolling back an interrupted create before creating again");
                self.roll_back_create(&leftover).await;
                if self.get_record(&name).await?.is_some() {
                    return Err(AgentError::FailedPrecondition(format!(
                        "export {name}: an interrupted create could not be rolled back (see the agent's log); retry shortly"
                    )));
                }
            }
            Some(existing) => {
                return self
                    .existing_export(existing, &req, &options, &source_record)
                    .await;
            }
            None => {}
        }
        let (source_path, floor) = self.resolve_source(&source).await?;
        let capacity = self.capacity_for(req.required_bytes, req.limit_bytes, floor)?;
        if req.required_bytes > 0 && (req.required_bytes as u64) < floor {
            return Err(AgentError::OutOfRange(format!(
                "capacity: the source needs at least {floor} bytes, but required_bytes is {}",
                req.required_bytes
            )));
        }
        let rel = RelPath::volume(&name);
        let fs = self.fs.clone();
        let probe = rel.clone();
        if blocking(move || fs.exists(&probe)).await? {
            return Err(AgentError::FailedPrecondition(format!(
                "{} already exists on the export root but the table has no export {name}: \
                 move it away (it may be retained data) or use another name",
                self.fs.absolute(&rel).display()
            )));
        }

        let now = now_unix_ms();
        let record = ExportRecord {
            name: name.clone(),
            export_id: self.allocate_export_id().await?,
            state: RecordState::Creating,
            path: rel.as_path().to_owned(),
            pseudo_path: self
                .exporter
                .client_path(name.as_ref(), &self.fs.absolute(&rel)),
            capacity_bytes: capacity,
            quota_enforced: self.fs.quota_enforced(),
            clients: Vec::new(),
            options,
            source: source_record,
            created_unix_ms: now,
            updated_unix_ms: now,
        };
        let mut record = self.put_export(record).await?;
        match self.materialise(&record, source_path, capacity).await {
            Ok(enforced) => record.capacity_bytes = enforced,
            Err(e) => {
                self.roll_back_create(&record).await;
                return Err(e);
            }
        }
        record.state = RecordState::Ready;
        let record = match self.put_export(record.clone()).await {
            Ok(record) => record,
            Err(e) => {
                self.roll_back_create(&record).await;
                return Err(e);
            }
        };
        if let Err(e) = self.exporter.apply(&self.spec(&record)).await {
            // An unreachable server keeps the export: a retry, or reconcile when the server
            // is back, activates it. A refusal, or a state directory too full or broken for
            // the server's export file, is undone, so nothing half-made stays behind.
            if !matches!(e, ExportError::Unavailable(_)) {
                if let Err(removing) = self.exporter.remove(record.export_id).await {
                    tracing::warn!(export = %name, error = %removing, "removing a failed export from the NFS server failed");
                }
                self.roll_back_create(&record).await;
            }
            return Err(e.into());
        }
        tracing::info!(export = %name, export_id = record.export_id, capacity = record.capacity_bytes, "export created");
        Ok(record)
    }

    /// A repeated CreateExport: the same export when compatible, ALREADY_EXISTS otherwise.
    /// A compatible repeat re-applies the export, so a retry after an NFS-server outage heals.
    async fn existing_export(
        &self,
        existing: ExportRecord,
        req: &CreateRequest,
        options: &OptionsRecord,
        source: &Option<SourceRecord>,
    ) -> Result<ExportRecord, AgentError> {
        let name = &existing.name;
        if existing.state != RecordState::Ready {
            return Err(AgentError::FailedPrecondition(format!(
                "export {name} is being {}; retry shortly",
                if existing.state == RecordState::Deleting {
                    "deleted"
                } else {
                    "created"
                }
            )));
        }
        let capacity = existing.capacity_bytes;
        let fits = capacity >= req.required_bytes.max(0) as u64
            && (req.limit_bytes <= 0 || capacity <= req.limit_bytes as u64);
        if !fits {
            return Err(AgentError::AlreadyExists(format!(
                "export {name} exists with {capacity} bytes, which does not fit required_bytes {} / limit_bytes {}",
                req.required_bytes, req.limit_bytes
            )));
        }
        if &existing.options != options || &existing.source != source {
            return Err(AgentError::AlreadyExists(format!(
                "export {name} exists with other options or another content source"
            )));
        }
        self.exporter.apply(&self.spec(&existing)).await?;
        Ok(existing)
    }

    /// Where the content comes from and the smallest capacity it needs.
    async fn resolve_source(
        &self,
        source: &Option<(Name, bool)>,
    ) -> Result<(Option<RelPath>, u64), AgentError> {
        match source {
            None => Ok((None, 0)),
            Some((name, true)) => {
                let table = self.table.clone();
                let key = name.clone();
                match blocking(move || table.snapshot(&key)).await? {
                    Some(s) if s.state == RecordState::Ready => {
                        Ok((Some(RelPath::snapshot(name)), s.size_bytes))
                    }
                    _ => Err(AgentError::NotFound(format!(
                        "source snapshot {name} does not exist"
                    ))),
                }
            }
            Some((name, false)) => match self.get_record(name).await? {
                Some(e) if e.state == RecordState::Ready => {
                    Ok((Some(RelPath::volume(name)), e.capacity_bytes))
                }
                _ => Err(AgentError::NotFound(format!(
                    "source export {name} does not exist"
                ))),
            },
        }
    }

    /// Creates the volume (empty, or as a copy of its source) and sets its quota.
    async fn materialise(
        &self,
        record: &ExportRecord,
        source: Option<RelPath>,
        capacity: u64,
    ) -> Result<u64, AgentError> {
        let fs = self.fs.clone();
        let rel = RelPath::volume(&record.name);
        let ownership = Ownership {
            uid: record.options.uid,
            gid: record.options.gid,
            mode: record.options.mode,
        };
        let project_id = record.export_id;
        blocking(move || {
            match &source {
                Some(src) => {
                    let method = fs.clone_tree(src, &rel)?;
                    tracing::info!(source = %src, target = %rel, ?method, "content copied");
                }
                None => fs.create_volume(&rel, ownership)?,
            }
            let enforced = fs.set_limit(&rel, project_id, capacity)?;
            fs.prepare_export(&rel)?;
            Ok::<_, crate::fs::FsError>(enforced)
        })
        .await
    }

    /// Undoes a create that failed or was interrupted: the data goes to the trash, the record
    /// goes. Errors are logged, not returned: the original error is what the caller needs.
    pub(crate) async fn roll_back_create(&self, record: &ExportRecord) {
        let fs = self.fs.clone();
        let table = self.table.clone();
        let name = record.name.clone();
        let rel = RelPath::volume(&name);
        let result = blocking(move || -> Result<(), AgentError> {
            fs.trash(&rel)?;
            table.remove_export(&name)?;
            Ok(())
        })
        .await;
        match result {
            Ok(()) => self.purge.notify_one(),
            Err(e) => {
                tracing::error!(export = %record.name, error = %e, "rolling back a failed create failed; reconcile will retry")
            }
        }
    }

    /// ExpandExport: raises the quota online; never shrinks. Returns the new capacity.
    pub async fn expand_export(
        &self,
        name: &str,
        required: i64,
        limit: i64,
    ) -> Result<u64, AgentError> {
        let name = parse_name(name, "name")?;
        if required <= 0 && limit <= 0 {
            return Err(AgentError::InvalidArgument(
                "capacity: give required_bytes or limit_bytes".into(),
            ));
        }
        let _guard = self.lock_export(&name).await;
        let Some(mut record) = self.get_record(&name).await? else {
            return Err(AgentError::NotFound(format!(
                "export {name} does not exist"
            )));
        };
        if record.state != RecordState::Ready {
            return Err(AgentError::FailedPrecondition(format!(
                "export {name} is not ready"
            )));
        }
        let wanted = self.capacity_for(required, limit, 0)?;
        if limit > 0 && record.capacity_bytes > limit as u64 {
            return Err(AgentError::OutOfRange(format!(
                "export {name} already has {} bytes, more than limit_bytes {limit}; shrinking is not supported",
                record.capacity_bytes
            )));
        }
        if wanted <= record.capacity_bytes {
            return Ok(record.capacity_bytes);
        }
        let fs = self.fs.clone();
        let rel = RelPath::volume(&name);
        let project_id = record.export_id;
        record.capacity_bytes = blocking(move || fs.set_limit(&rel, project_id, wanted)).await?;
        record.updated_unix_ms = now_unix_ms();
        let record = self.put_export(record).await?;
        tracing::info!(export = %name, capacity = record.capacity_bytes, "export expanded");
        Ok(record.capacity_bytes)
    }

    /// DeleteExport: unexport, then delete, retain or archive the data. Already gone: success.
    pub async fn delete_export(
        &self,
        name: &str,
        policy: Option<OnDelete>,
    ) -> Result<(), AgentError> {
        let name = parse_name(name, "name")?;
        let _guard = self.lock_export(&name).await;
        let Some(mut record) = self.get_record(&name).await? else {
            return Ok(());
        };
        if let Some(policy) = policy {
            record.options.on_delete = policy;
        }
        record.state = RecordState::Deleting;
        record.updated_unix_ms = now_unix_ms();
        let record = self.put_export(record).await?;
        self.finish_delete(&record).await
    }

    /// The part of a delete after the record says `deleting`; reconcile calls it too.
    pub(crate) async fn finish_delete(&self, record: &ExportRecord) -> Result<(), AgentError> {
        self.exporter.remove(record.export_id).await?;
        let name = record.name.clone();
        let rel = RelPath::volume(&name);
        let fs = self.fs.clone();
        let table = self.table.clone();
        let policy = record.options.on_delete;
        let archived = blocking(move || -> Result<Option<PathBuf>, AgentError> {
            let archived = match policy {
                OnDelete::Delete => {
                    fs.trash(&rel)?;
                    None
                }
                OnDelete::Retain => None,
                OnDelete::Archive => fs.archive(&rel)?,
            };
            table.remove_export(&name)?;
            Ok(archived)
        })
        .await?;
        self.purge.notify_one();
        tracing::info!(export = %record.name, ?policy, archived = ?archived, "export deleted");
        Ok(())
    }

    pub async fn get_export(&self, name: &str) -> Result<ExportRecord, AgentError> {
        let name = parse_name(name, "name")?;
        match self.get_record(&name).await? {
            Some(record) if record.state == RecordState::Ready => Ok(record),
            _ => Err(AgentError::NotFound(format!(
                "export {name} does not exist"
            ))),
        }
    }

    /// Ready exports ordered by name, from after `token`, at most `max` (0: all).
    pub async fn list_exports(
        &self,
        max: i32,
        token: &str,
    ) -> Result<(Vec<ExportRecord>, String), AgentError> {
        check_max_entries(max)?;
        let after = parse_token(token)?;
        let table = self.table.clone();
        let all = blocking(move || table.exports()).await?;
        let ready = all.into_iter().filter(|r| r.state == RecordState::Ready);
        Ok(page(ready, |r| r.name.as_str(), after.as_deref(), max))
    }
}

const TOKEN_PREFIX: &str = "after:";

pub(crate) fn check_max_entries(max: i32) -> Result<(), AgentError> {
    if max < 0 {
        return Err(AgentError::InvalidArgument(format!(
            "max_entries {max} must not be negative"
        )));
    }
    Ok(())
}

/// Paging tokens name the last entry returned, so they stay valid while entries come and go.
pub(crate) fn parse_token(token: &str) -> Result<Option<String>, AgentError> {
    if token.is_empty() {
        return Ok(None);
    }
    token
        .strip_prefix(TOKEN_PREFIX)
        .and_then(|n| Name::parse(n).ok())
        .map(|n| Some(n.to_string()))
        .ok_or_else(|| {
            AgentError::Aborted(format!(
                "starting_token {token:?} was not issued by this agent"
            ))
        })
}

/// One page of name-ordered `items` after `after`.
pub(crate) fn page<T>(
    items: impl Iterator<Item = T>,
    name: impl Fn(&T) -> &str,
    after: Option<&str>,
    max: i32,
) -> (Vec<T>, String) {
    let mut out: Vec<T> = items
        .filter(|i| after.is_none_or(|a| name(i) > a))
        .collect();
    let max = usize::try_from(max).unwrap_or(0);
    let mut next = String::new();
    if max > 0 && out.len() > max {
        out.truncate(max);
        if let Some(last) = out.last() {
            next = format!("{TOKEN_PREFIX}{}", name(last));
        }
    }
    (out, next)
}
