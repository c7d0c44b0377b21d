use std::sync::Mutex as StdMutex;

use super::*;

#[derive(Default)]
struct Recorder {
    calls: StdMutex<Vec<Vec<String>>>,
    listing: StdMutex<String>,
}

#[tonic::async_trait]
impl CommandRunner for Recorder {
    async fn run(&self, _program: &Path, args: &[String]) -> Result<String, String> {
        self.calls.lock().unwrap().push(args.to_vec());
        if args.first().is_some_and(|a| a.contains(';')) {
            return Err("refused".into());
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
    }
}

fn exporter(dir: &Path) -> (KernelExporter, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
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

#[tokio::test]
async fn each_client_is_one_exportfs_call_with_a_pinned_fsid() {
    let dir = tempfile::tempdir().unwrap();
    let (exporter, recorder) = exporter(dir.path());
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
    let calls = recorder.calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        vec![
            vec![
                "-o".to_string(),
                "rw,sync,no_subtree_check,insecure,fsid=7,root_squash,sec=sys".into(),
                "10.0.0.1:/drbd/exports/volumes/pvc-7".into()
            ],
            vec![
                "-o".to_string(),
                "ro,sync,no_subtree_check,insecure,fsid=7,root_squash,sec=sys".into(),
                "10.0.0.2:/drbd/exports/volumes/pvc-7".into()
            ],
        ]
    );
}

#[tokio::test]
async fn a_removed_client_is_unexported() {
    let dir = tempfile::tempdir().unwrap();
    let (exporter, recorder) = exporter(dir.path());
    exporter
        .apply(&spec(
            7,
            vec![
                (addr("10.0.0.1"), Access::Rw),
                (addr("10.0.0.2"), Access::Rw),
            ],
        ))
        .await
        .unwrap();
    recorder.calls.lock().unwrap().clear();
    exporter
        .apply(&spec(7, vec![(addr("10.0.0.1"), Access::Rw)]))
        .await
        .unwrap();
    let calls = recorder.calls.lock().unwrap().clone();
    assert_eq!(
        calls.last().unwrap(),
        &vec![
            "-u".to_string(),
            "10.0.0.2:/drbd/exports/volumes/pvc-7".into()
        ]
    );
}

#[tokio::test]
async fn the_exports_file_follows_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let (exporter, _) = exporter(dir.path());
    let file = dir.path().join("exports.d/rwxnfs.exports");
    exporter
        .apply(&spec(7, vec![(addr("10.0.0.1"), Access::Rw)]))
        .await
        .unwrap();
    exporter.apply(&spec(8, vec![])).await.unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("\"/drbd/exports/volumes/pvc-7\" 10.0.0.1(rw,sync,no_subtree_check,insecure,fsid=7,root_squash,sec=sys)"), "{text}");
    assert!(
        text.contains("# export 8 /drbd/exports/volumes/pvc-8: no clients"),
        "{text}"
    );
    exporter.remove(7).await.unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("pvc-7"), "{text}");
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
        .apply(&spec(7, vec![(addr("10.0.0.1"), Access::Rw)]))
        .await
        .unwrap();
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
