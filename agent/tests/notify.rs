//! Under systemd (`Type=notify`), the agent reports itself started only once its first
//! reconcile has put the recorded exports back: the unit after it in the HA promoter's order
//! (kernel nfsd) must not serve before them. Its own test binary: it sets NOTIFY_SOCKET for the
//! whole process.
#![allow(unsafe_code)] // std::env::set_var, before the runtime's threads exist
#![allow(clippy::unwrap_used)]

use std::{os::unix::net::UnixDatagram, path::Path, sync::Arc, time::Duration};

use rwxnfs_agent::{config::AgentConfig, exporter::fake::FakeExporter, fs::plain::PlainFs, run};

#[tokio::test]
async fn ready_is_sent_to_systemd_after_the_first_reconcile() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("exports")).unwrap();
    let socket = dir.path().join("notify.sock");
    let receiver = UnixDatagram::bind(&socket).unwrap();
    receiver
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // SAFETY: this test binary has one test, and nothing else reads the environment while it
    // is changed.
    unsafe { std::env::set_var("NOTIFY_SOCKET", &socket) };
    let text = format!(
        "exportRoot: {0}/exports\nstateDir: {0}/state\nlisten: [\"unix://{0}/agent.sock\"]\n",
        dir.path().display()
    );
    let config = AgentConfig::parse(&text, Path::new("agent.yaml")).unwrap();
    let _agent = run::start(
        &config,
        Arc::new(PlainFs::open(&dir.path().join("exports")).unwrap()),
        Arc::new(FakeExporter::new()),
    )
    .unwrap();
    let message = tokio::task::spawn_blocking(move || {
        let mut buf = [0u8; 256];
        let n = receiver.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .unwrap();
    assert!(message.starts_with("READY=1\n"), "{message}");
    assert!(message.contains("STATUS=reconciled"), "{message}");
}
