use std::{path::PathBuf, sync::Mutex as StdMutex};

use super::*;

/// Records every exportfs call. `-r` plays nfs-utils: it reads the exports file and writes the
/// etab from it, leaving out (and failing on) any export whose path contains "bad".
#[derive(Default)]
struct Recorder {
    calls: StdMutex<Vec<Vec<String>>>,
    listing: StdMutex<String>,
    /// (exports file, etab) for `-r`.
    files: StdMutex<Option<(PathBuf, PathBuf)>>,
    /// How long `-r` takes.
    delay_ms: u64,
}

#[tonic::async_trait]
impl CommandRunner for Recorder {
    async fn run(&self, _program: &Path, args: &[String]) -> Result<String, String> {
        self.calls.lock().unwrap().push(args.to_vec());
        if args.first().is_some_and(|a| a.contains(';')) {
            return Err("refused".into());
        }
        if args == ["-r"] {
            tokio::time::sleep(std::time::Duration::from_millis(self.delay_ms)).await;
            let files = self.files.lock().unwrap().clone();
            if let Some((exports, etab)) = files {
                let text = std::fs::read_to_string(exports).unwrap_or_default();
                let mut table = String::new();
                let mut failed = false;
                for line in text.lines().filter(|l| !l.starts_with('#')) {
                    let (path, clients) = line.split_once(' ').unwrap();
                    let path = path.trim_matches('"');
                    if path.contains("bad") {
                        failed = true;
                        continue;
                    }
                    for client in clients.split(' ') {
                        table.push_str(&format!("{path}\t{client}\n"));
                    }
                }
                std::fs::write(etab, table).unwrap();
                if failed {
                    return Err("exportfs: Failed to stat /bad: No such file or directory".into());
                }
            }
        }
        Ok(self.listing.lock().unwrap().clone())
    }
}

fn spec(id: u32, clients: Vec<(Client, Access)>) -> ExportSpec {
    ExportSpec {
        export_id: id,
        path: format!("/drbd/exports/volumes/pvc-{id}").into(),
        pseudo_path: format!("/pvc-{id}"),
        clients,
        squash: Squash::Root,
        transport: rwxnfs_model::Transport::None,
    }
}

fn exporter(dir: &Path) -> (KernelExporter, Arc<Recorder>) {
    with_recorder(dir, Recorder::default())
}

/// An exporter whose `-r` writes an etab from the exports file, already told the (empty)
/// table by a first `apply_all`.
async fn seeded(dir: &Path, delay_ms: u64) -> (KernelExporter, Arc<Recorder>) {
    let recorder = Recorder {
        delay_ms,
        ..Recorder::default()
    };
    *recorder.files.lock().unwrap() = Some((
        dir.join("exports.d/rwxnfs.exports"),
        dir.join("var/lib/nfs/etab"),
    ));
    let (exporter, recorder) = with_recorder(dir, recorder);
    let exporter = exporter.with_etab(dir.join("var/lib/nfs/etab"));
    assert!(exporter.apply_all(&[]).await.is_empty());
    recorder.calls.lock().unwrap().clear();
    (exporter, recorder)
}

fn with_recorder(dir: &Path, recorder: Recorder) -> (KernelExporter, Arc<Recorder>) {
    let recorder = Arc::new(recorder);
    let exporter = KernelExporter::new(
        "/usr/sbin/exportfs".into(),
        dir.join("exports.d/rwxnfs.exports"),
        recorder.clone(),
    );
    (exporter, recorder)
}

fn addr(s: &str) -> Client {
    Client::Address(s.parse().unwrap())
}

fn exports_file(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("exports.d/rwxnfs.exports")).unwrap()
}

#[tokio::test]
async fn an_export_is_a_line_of_the_exports_file_with_a_pinned_fsid_then_one_exportfs_r() {
    let dir = tempfile::tempdir().unwrap();
    let (exporter, recorder) = seeded(dir.path(), 0).await;
    exporter
        .apply(&spec(
            7,
            vec![
                (addr("10.0.0.1"), Access::Rw),
                (addr("10.0.0.2"), Access::Ro),
            ],
        ))
        .await
        .unwrap();
    assert_eq!(
        *recorder.calls.lock().unwrap(),
        vec![vec!["-r".to_string()]]
    );
    assert!(exports_file(dir.path()).contains(
        "\"/drbd/exports/volumes/pvc-7\" \
         10.0.0.1(rw,sync,no_subtree_check,insecure,fsid=7,root_squash,sec=sys) \
         10.0.0.2(ro,sync,no_subtree_check,insecure,fsid=7,root_squash,sec=sys)"
    ));
    let etab = std::fs::read_to_string(dir.path().join("var/lib/nfs/etab")).unwrap();
    assert!(Etab::parse(&etab).serves(&spec(7, vec![(addr("10.0.0.2"), Access::Ro)])));
}

#[tokio::test]
async fn changes_arriving_together_share_one_exportfs_run() {
    let dir = tempfile::tempdir().unwrap();
    let (exporter, recorder) = seeded(dir.path(), 30).await;
    let exporter = Arc::new(exporter);
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let exporter = exporter.clone();
            tokio::spawn(async move {
                exporter
                    .apply(&spec(100 + i, vec![(addr("10.0.0.1"), Access::Rw)]))
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let runs = recorder.calls.lock().unwrap().len();
    assert!(runs <= 3, "{runs} exportfs runs for 64 concurrent creates");
    let text = exports_file(dir.path());
    assert_eq!(text.lines().filter(|l| l.contains("fsid=")).count(), 64);
}

#[tokio::test]
async fn a_removed_client_and_a_removed_export_leave_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (exporter, recorder) = seeded(dir.path(), 0).await;
    let two = vec![
        (addr("10.0.0.1"), Access::Rw),
        (addr("10.0.0.2"), Access::Rw),
    ];
    exporter.apply(&spec(7, two)).await.unwrap();
    exporter.apply(&spec(8, vec![])).await.unwrap();
    exporter
        .apply(&spec(7, vec![(addr("10.0.0.1"), Access::Rw)]))
        .await
        .unwrap();
    let text = exports_file(dir.path());
    assert!(
        text.contains("10.0.0.1(rw,") && !text.contains("10.0.0.2"),
        "{text}"
    );
    assert!(
        text.contains("# export 8 /drbd/exports/volumes/pvc-8: no clients"),
        "{text}"
    );
    exporter.remove(7).await.unwrap();
    assert!(!exports_file(dir.path()).contains("pvc-7"));
    assert_eq!(recorder.calls.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn single_changes_wait_for_reconcile_to_hand_over_the_whole_table() {
    let dir = tempfile::tempdir().unwrap();
    let (exporter, recorder) = exporter(dir.path());
    let err = exporter
        .apply(&spec(7, vec![(addr("10.0.0.1"), Access::Rw)]))
        .await
        .unwrap_err();
    assert!(matches!(err, ExportError::Unavailable(_)), "{err}");
    assert!(exporter.remove(7).await.is_err());
    // Nothing ran and nothing was written: a commit now would unexport the rest of the table.
    assert!(recorder.calls.lock().unwrap().is_empty());
    assert!(!dir.path().join("exports.d/rwxnfs.exports").exists());
    let all: Vec<_> = (1..=3)
        .map(|i| spec(i, vec![(addr("10.0.0.1"), Access::Rw)]))
        .collect();
    assert!(exporter.apply_all(&all).await.iter().all(Result::is_ok));
    assert_eq!(
        *recorder.calls.lock().unwrap(),
        vec![vec!["-r".to_string()]]
    );
    exporter.apply(&spec(7, vec![])).await.unwrap();
    assert_eq!(exports_file(dir.path()).matches("fsid=").count(), 3);
}

#[tokio::test]
async fn an_export_exportfs_refuses_fails_alone_and_is_not_carried_further() {
    let dir = tempfile::tempdir().unwrap();
    let (exporter, _) = seeded(dir.path(), 0).await;
    let mut bad = spec(9, vec![(addr("10.0.0.1"), Access::Rw)]);
    bad.path = "/drbd/exports/volumes/bad".into();
    let good = spec(10, vec![(addr("10.0.0.1"), Access::Rw)]);
    let results = exporter.apply_all(&[bad.clone(), good.clone()]).await;
    let err = results[0].as_ref().unwrap_err();
    assert!(
        matches!(err, ExportError::Refused { export_id: 9, message } if message.contains("Failed to stat")),
        "{err}"
    );
    assert!(results[1].is_ok(), "{:?}", results[1]);
    // The next commit leaves the refused export out, and succeeds.
    exporter
        .apply(&spec(11, vec![(addr("10.0.0.2"), Access::Ro)]))
        .await
        .unwrap();
    let text = exports_file(dir.path());
    assert!(!text.contains("bad") && text.contains("fsid=10,") && text.contains("fsid=11,"));
}

#[tokio::test]
async fn a_batch_that_could_not_reach_the_server_is_kept_for_the_next_reconcile() {
    let dir = tempfile::tempdir().unwrap();
    // exportfs -r fails and there is no table to say what went live.
    let recorder = Arc::new(Recorder::default());
    let exporter = KernelExporter::new(
        "/x".into(),
        dir.path().join("exports.d/rwxnfs.exports"),
        recorder.clone(),
    );
    std::fs::create_dir_all(dir.path().join("exports.d/rwxnfs.exports")).unwrap();
    let results = exporter
        .apply_all(&[spec(7, vec![(addr("10.0.0.1"), Access::Rw)])])
        .await;
    assert!(matches!(results[0], Err(ExportError::Unavailable(_))));
    // Not told the whole table yet: single changes are still refused.
    assert!(matches!(
        exporter.apply(&spec(8, vec![])).await,
        Err(ExportError::Unavailable(_))
    ));
    std::fs::remove_dir(dir.path().join("exports.d/rwxnfs.exports")).unwrap();
    assert!(exporter.apply_all(&[]).await.is_empty());
    assert!(exports_file(dir.path()).contains("fsid=7,"));
}

#[test]
fn the_etab_says_which_clients_have_which_access() {
    let etab = Etab::parse(
        "/drbd/exports/volumes/pvc-7\t10.0.0.1(rw,sync,wdelay,hide,nocrossmnt,insecure,root_squash,no_all_squash,no_subtree_check,secure_locks,acl,no_pnfs,fsid=7,anonuid=65534,anongid=65534,sec=sys,rw,insecure,root_squash,no_all_squash)\n\
         /drbd/exports/volumes/pvc-7\tfd00::2(ro,sync,fsid=7,sec=sys)\n\
         /srv/other\t*(ro,sec=sys)\n",
    );
    assert!(etab.serves(&spec(
        7,
        vec![
            (addr("10.0.0.1"), Access::Rw),
            (addr("fd00::2"), Access::Ro)
        ]
    )));
    assert!(!etab.serves(&spec(7, vec![(addr("10.0.0.1"), Access::Ro)])));
    assert!(!etab.serves(&spec(7, vec![(addr("10.0.0.3"), Access::Rw)])));
    assert!(!etab.serves(&spec(8, vec![(addr("10.0.0.1"), Access::Rw)])));
}

#[test]
fn ipv6_clients_are_bracketed() {
    assert_eq!(client_name(&addr("fd00::1")), "[fd00::1]");
    assert_eq!(
        client_name(&Client::Network("fd00::/64".parse().unwrap())),
        "[fd00::]/64"
    );
    assert_eq!(
        client_name(&Client::Network("10.0.0.0/8".parse().unwrap())),
        "10.0.0.0/8"
    );
}

#[test]
fn squash_options_map_to_exportfs_words() {
    let mut s = spec(1, vec![]);
    s.squash = Squash::None;
    assert!(options(&s, Access::Rw).contains("no_root_squash"));
    s.squash = Squash::All;
    assert!(
        options(&s, Access::Ro).starts_with("ro,")
            && options(&s, Access::Ro).contains("all_squash")
    );
}

#[test]
fn a_transport_becomes_the_export_s_xprtsec() {
    use rwxnfs_model::Transport;
    let mut s = spec(7, vec![]);
    assert!(!options(&s, Access::Rw).contains("xprtsec"));
    s.transport = Transport::Tls;
    assert!(options(&s, Access::Rw).ends_with(",sec=sys,xprtsec=tls:mtls"));
    s.transport = Transport::Mtls;
    assert!(options(&s, Access::Ro).ends_with(",sec=sys,xprtsec=mtls"));
}

#[test]
fn rpc_with_tls_needs_linux_6_5() {
    for release in ["6.5.0", "6.12.48+deb13-amd64", "6.18.44-fc-v1045", "7.0"] {
        assert_eq!(rpc_tls_support(release), Ok(()), "{release}");
    }
    for release in ["6.1.0-40-amd64", "5.15.0"] {
        let err = rpc_tls_support(release).unwrap_err();
        assert!(
            err.contains("6.5 or later") && err.contains(release),
            "{err}"
        );
    }
    assert!(rpc_tls_support("weird").is_err());
}

#[test]
fn active_exports_are_read_from_exportfs_listing() {
    let listing = "/drbd/exports/volumes/pvc-7\n\t\t10.0.0.1(sync,wdelay,hide,no_subtree_check,fsid=7,sec=sys,rw,insecure,root_squash,no_all_squash)\n/srv/x  10.0.0.2(ro,fsid=123,sec=sys)\n/srv/y  <world>(ro,sec=sys)\n";
    assert_eq!(parse_active(listing), vec![7, 123]);
}

#[tokio::test]
async fn a_refusal_from_exportfs_is_reported_with_its_message() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let exporter = KernelExporter::new("/x".into(), dir.path().join("f"), recorder);
    let err = exporter.exportfs(vec!["-o;".into()], 9).await.unwrap_err();
    assert!(
        matches!(err, ExportError::Refused { export_id: 9, .. }),
        "{err}"
    );
}

#[test]
fn clients_mount_the_real_directory_since_nfsd_has_no_pseudo_paths() {
    let dir = tempfile::tempdir().unwrap();
    let (exporter, _) = exporter(dir.path());
    assert_eq!(
        exporter.client_path("pvc-7", Path::new("/drbd/exports/volumes/pvc-7")),
        "/drbd/exports/volumes/pvc-7"
    );
}

#[tokio::test]
async fn a_host_where_no_nfs_server_ran_yet_gets_an_empty_etab_before_the_first_exportfs() {
    let dir = tempfile::tempdir().unwrap();
    let etab = dir.path().join("var/lib/nfs/etab");
    let (exporter, recorder) = exporter(dir.path());
    let exporter = exporter.with_etab(etab.clone());
    // Reconciling an empty table lists what is active first: that needs it too.
    exporter.active().await.unwrap();
    assert!(etab.exists());
    std::fs::remove_file(&etab).unwrap();
    exporter
        .apply_all(&[spec(7, vec![(addr("10.0.0.1"), Access::Rw)])])
        .await
        .into_iter()
        .for_each(|r| r.unwrap());
    assert_eq!(std::fs::read_to_string(&etab).unwrap(), "");
    assert_eq!(recorder.calls.lock().unwrap().len(), 2);
    // An existing table is left as it is.
    std::fs::write(&etab, "kept\n").unwrap();
    exporter
        .apply(&spec(8, vec![(addr("10.0.0.1"), Access::Rw)]))
        .await
        .unwrap();
    assert_eq!(std::fs::read_to_string(&etab).unwrap(), "kept\n");
}

/// An `etab`-mode exporter over `dir`: the table at var/lib/nfs/etab, the export root
/// /drbd/exports, fake cache flush files under proc/net/rpc.
fn direct(dir: &Path) -> KernelExporter {
    for cache in ["auth.unix.ip", "auth.unix.gid", "nfsd.fh", "nfsd.export"] {
        std::fs::create_dir_all(dir.join("proc/net/rpc").join(cache)).unwrap();
        std::fs::write(dir.join("proc/net/rpc").join(cache).join("flush"), "").unwrap();
    }
    KernelExporter::direct(
        dir.join("var/lib/nfs/etab"),
        "/drbd/exports".into(),
        dir.join("proc/net/rpc"),
    )
}

fn etab(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("var/lib/nfs/etab")).unwrap()
}

#[tokio::test]
async fn the_etab_mode_writes_one_line_per_client_keeps_the_hosts_lines_and_flushes_the_caches() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("var/lib/nfs")).unwrap();
    // The host's own exports (the export root itself included), as exportfs writes them.
    let host = "/srv/home\t10.1.0.0/16(rw,sync,wdelay,hide,no_subtree_check,sec=sys,root_squash)\n\
                /drbd/exports\t10.1.0.9(ro,fsid=0,sec=sys)\n";
    // A stale line of the agent's, from before a failover.
    let stale = "/drbd/exports/volumes/pvc-99\t10.0.0.9(rw,fsid=99)\n";
    std::fs::write(
        dir.path().join("var/lib/nfs/etab"),
        format!("{host}{stale}"),
    )
    .unwrap();
    let exporter = direct(dir.path());
    assert!(matches!(
        exporter
            .apply(&spec(7, vec![(addr("10.0.0.1"), Access::Rw)]))
            .await,
        Err(ExportError::Unavailable(_))
    ));
    let results = exporter
        .apply_all(&[spec(
            7,
            vec![
                (addr("10.0.0.1"), Access::Rw),
                (addr("fd00::2"), Access::Ro),
            ],
        )])
        .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(
        etab(dir.path()),
        format!(
            "{host}\"/drbd/exports/volumes/pvc-7\"\t10.0.0.1(rw,sync,no_subtree_check,insecure,fsid=7,root_squash,sec=sys)\n\
             \"/drbd/exports/volumes/pvc-7\"\tfd00::2(ro,sync,no_subtree_check,insecure,fsid=7,root_squash,sec=sys)\n"
        )
    );
    for cache in ["auth.unix.ip", "auth.unix.gid", "nfsd.fh", "nfsd.export"] {
        let flushed =
            std::fs::read_to_string(dir.path().join("proc/net/rpc").join(cache).join("flush"))
                .unwrap();
        assert!(
            flushed.trim().parse::<u64>().is_ok(),
            "{cache}: {flushed:?}"
        );
    }
    assert_eq!(exporter.active().await.unwrap(), vec![7]);
    exporter
        .apply(&spec(8, vec![(addr("10.0.0.2"), Access::Rw)]))
        .await
        .unwrap();
    exporter.remove(7).await.unwrap();
    assert_eq!(exporter.active().await.unwrap(), vec![8]);
    assert!(etab(dir.path()).starts_with(host));
    // The host exports one more directory (exportfs -o by hand: a new table renamed over
    // it) between two commits: the next commit reads the host's lines again, not the ones it
    // kept from its own last write.
    let added = "/srv/scratch\t10.1.0.7(rw,sync,sec=sys)\n";
    let path = dir.path().join("var/lib/nfs/etab");
    let tmp = dir.path().join("var/lib/nfs/etab.tmp");
    std::fs::write(
        &tmp,
        format!("{host}{added}{}", etab(dir.path()).replace(host, "")),
    )
    .unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    exporter
        .apply(&spec(9, vec![(addr("10.0.0.3"), Access::Rw)]))
        .await
        .unwrap();
    assert!(
        etab(dir.path()).starts_with(&format!("{host}{added}")),
        "{}",
        etab(dir.path())
    );
    assert_eq!(exporter.active().await.unwrap(), vec![8, 9]);
    exporter.probe().await.unwrap();
    // Nothing left behind but the table and nfs-utils' lock file.
    let mut names: Vec<_> = std::fs::read_dir(dir.path().join("var/lib/nfs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, [".etab.lock", "etab"]);
}

/// Every flush makes rpc.mountd read the whole table again at its next upcall: a commit that
/// changes no line of the table (a create without clients, a grant already there) writes and
/// flushes nothing; one that does, both.
#[tokio::test]
async fn a_commit_that_changes_no_line_of_the_table_writes_and_flushes_nothing() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let exporter = direct(dir.path());
    let node = vec![(addr("10.0.0.1"), Access::Rw)];
    exporter
        .apply_all(&[spec(5, node.clone())])
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let path = dir.path().join("var/lib/nfs/etab");
    let flush = dir.path().join("proc/net/rpc/nfsd.export/flush");
    let written = std::fs::metadata(&path).unwrap().ino();
    std::fs::write(&flush, "").unwrap();
    exporter.apply(&spec(6, vec![])).await.unwrap();
    exporter.apply(&spec(5, node.clone())).await.unwrap();
    exporter.remove(6).await.unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().ino(), written);
    assert_eq!(std::fs::read_to_string(&flush).unwrap(), "", "flushed");

    exporter.apply(&spec(6, node)).await.unwrap();
    assert_ne!(std::fs::metadata(&path).unwrap().ino(), written);
    assert!(etab(dir.path()).contains("fsid=6"));
    assert_ne!(std::fs::read_to_string(&flush).unwrap(), "", "not flushed");
}

#[tokio::test]
async fn the_etab_mode_needs_no_table_yet_and_fails_whole_when_it_cannot_write_it() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = direct(dir.path());
    assert!(exporter.apply_all(&[]).await.is_empty());
    assert_eq!(etab(dir.path()), "");
    // The table's directory turned into a file: nothing can be written there.
    std::fs::remove_dir_all(dir.path().join("var/lib/nfs")).unwrap();
    std::fs::write(dir.path().join("var/lib/nfs"), "").unwrap();
    let err = exporter
        .apply(&spec(3, vec![(addr("10.0.0.1"), Access::Rw)]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ExportError::Unavailable(m) if m.contains("var/lib/nfs")),
        "{err}"
    );
    assert!(exporter.probe().await.is_err());
}

#[tokio::test]
async fn the_etab_mode_puts_its_exports_back_after_an_exportfs_r_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = direct(dir.path());
    exporter
        .apply_all(&[spec(5, vec![(addr("10.0.0.1"), Access::Rw)])])
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    // exportfs -r: a new table from the exports files alone.
    let path = dir.path().join("var/lib/nfs/etab");
    std::fs::write(
        dir.path().join("var/lib/nfs/etab.tmp"),
        "/srv/home\t10.1.0.0/16(rw)\n",
    )
    .unwrap();
    std::fs::rename(dir.path().join("var/lib/nfs/etab.tmp"), &path).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !etab(dir.path()).contains("fsid=5") {
        assert!(std::time::Instant::now() < deadline, "{}", etab(dir.path()));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(etab(dir.path()).starts_with("/srv/home\t10.1.0.0/16(rw)\n"));
}

#[test]
fn a_table_line_gives_its_path_unquoted_and_unescaped() {
    assert_eq!(
        etab_line_path("/srv/a\\040b\t10.0.0.1(rw)").as_deref(),
        Some("/srv/a b")
    );
    assert_eq!(
        etab_line_path("\"/drbd/exports/x\"\t10.0.0.1(rw)").as_deref(),
        Some("/drbd/exports/x")
    );
    assert_eq!(etab_line_path("/p 10.0.0.1(rw)").as_deref(), Some("/p"));
    assert_eq!(etab_line_path("").as_deref(), None);
    assert_eq!(etab_line_path("\"/unterminated").as_deref(), None);
    assert!(is_agents_line(
        "/drbd/exports/v\t*(rw)",
        Path::new("/drbd/exports")
    ));
    assert!(!is_agents_line(
        "/drbd/exports\t*(rw)",
        Path::new("/drbd/exports")
    ));
    assert!(!is_agents_line(
        "/drbd/exports2/v\t*(rw)",
        Path::new("/drbd/exports")
    ));
}
