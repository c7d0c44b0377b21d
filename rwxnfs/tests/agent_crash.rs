//! Crash safety: `rwxnfs agent` is killed with SIGKILL at arbitrary points of 16 concurrent
//! streams of creates, grants and deletes against a real Ganesha (so kills land inside
//! commits that several calls share), and restarted each time. In the end,
//! after reconcile: every acknowledged create is there and exported, every acknowledged delete
//! is gone, the table holds only whole records in their final state, and Ganesha exports
//! what the table says (every export with a client, none the table lacks).
#![allow(clippy::unwrap_used)]

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime},
};

use rwxnfs_agent::{
    exporter::Exporter,
    table::{RecordState, Table},
};
use rwxnfs_proto::agent::{self as pb, agent_client::AgentClient};
use rwxnfs_server::Endpoint;
use rwxnfs_testbed::{Dbus, Ganesha, Netns, require};

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_agent(config: &Path, socket: &Path) -> Agent {
    let child = Command::new(env!("CARGO_BIN_EXE_rwxnfs"))
        .args(["--log-format", "json", "agent", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let agent = Agent(child);
    let started = Instant::now();
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the agent did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    agent
}

/// A cheap pseudo-random number from the clock: enough to vary where the kills land.
fn jitter(max: u64) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    nanos % max
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Create,
    Grant,
    Delete,
}

async fn operate(
    mut client: AgentClient<tonic::transport::Channel>,
    name: &str,
    op: Op,
) -> Result<(), tonic::Status> {
    match op {
        Op::Create => client
            .create_export(pb::CreateExportRequest {
                name: name.to_owned(),
                required_bytes: 1 << 20,
                ..Default::default()
            })
            .await
            .map(|_| ()),
        Op::Grant => client
            .grant_access(pb::GrantAccessRequest {
                name: name.to_owned(),
                client: Some(pb::ClientAccess {
                    client_id: "n1".into(),
                    addresses: vec!["10.77.1.2".into()],
                    mode: pb::AccessMode::ReadWrite as i32,
                }),
            })
            .await
            .map(|_| ()),
        Op::Delete => client
            .delete_export(pb::DeleteExportRequest {
                name: name.to_owned(),
                policy: 0,
            })
            .await
            .map(|_| ()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_any_point_loses_nothing_and_leaves_no_orphan() {
    require(&["ip", "ganesha.nfsd", "dbus-daemon", "dbus-send"]);
    let dir = tempfile::tempdir().unwrap();
    let bus = Dbus::start(dir.path());
    let server = Netns::new("crash");
    let (root, state) = (dir.path().join("exports"), dir.path().join("state"));
    std::fs::create_dir_all(state.join("ganesha")).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    let _ganesha = Ganesha::start(
        &server,
        &bus,
        dir.path(),
        &state.join("ganesha/exports.conf"),
        &state.join("recovery"),
        "crash",
    );
    let socket = dir.path().join("agent.sock");
    let config = dir.path().join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "exportRoot: {}\nstateDir: {}\nquota: none\nnfsServer: {{kind: ganesha, dbusAddress: \"{}\", dbusNamePrefix: crash}}\nlisten: [\"unix://{}\"]\n",
            root.display(),
            state.display(),
            bus.address(),
            socket.display()
        ),
    )
    .unwrap();

    // Expected final state per name, from acknowledged operations only.
    let mut acked: BTreeMap<String, Op> = BTreeMap::new();
    let mut kills = 0;
    for round in 0..8 {
        let mut agent = start_agent(&config, &socket);
        let channel = Endpoint::Unix(socket.clone()).connect().await.unwrap();
        // The operations run while the agent is killed under them: 16 callers at once, each
        // on names of its own (so each name's operations have one order), so the kill lands
        // in the middle of commits that several calls share.
        let ops = tokio::spawn(async move {
            let callers: Vec<_> = (0..16)
                .map(|caller| {
                    let channel = channel.clone();
                    tokio::spawn(async move {
                        let mut outcomes = Vec::new();
                        for i in 0..100 {
                            let name = format!("c{caller}-{}", (round * 7 + i) % 4);
                            let op = [Op::Create, Op::Grant, Op::Delete][(i + round + caller) % 3];
                            let result = operate(AgentClient::new(channel.clone()), &name, op).await;
                            let dead = matches!(&result, Err(s) if matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled));
                            outcomes.push((name, op, result.map_err(|s| s.code())));
                            if dead {
                                break;
                            }
                        }
                        outcomes
                    })
                })
                .collect();
            let mut outcomes = Vec::new();
            for caller in callers {
                outcomes.extend(caller.await.unwrap());
            }
            outcomes
        });
        tokio::time::sleep(Duration::from_millis(15 + jitter(100))).await;
        // SIGKILL, wherever the agent is.
        let _ = agent.0.kill();
        let _ = agent.0.wait();
        kills += 1;
        for (name, op, result) in ops.await.unwrap() {
            match (op, result) {
                (Op::Create | Op::Grant, Ok(())) => {
                    acked.insert(name, Op::Create);
                }
                (Op::Delete, Ok(())) => {
                    acked.insert(name, Op::Delete);
                }
                // A grant on a missing export is refused: nothing changes.
                (Op::Grant, Err(tonic::Code::NotFound)) => {}
                // In flight at the kill: either outcome is allowed.
                (_, Err(_)) => {
                    acked.remove(&name);
                }
            }
        }
    }

    // Restart once more and reconcile.
    let _agent = start_agent(&config, &socket);
    let channel = Endpoint::Unix(socket.clone()).connect().await.unwrap();
    let report = AgentClient::new(channel)
        .reconcile(pb::ReconcileRequest {})
        .await
        .unwrap()
        .into_inner();
    println!("{kills} kills; reconcile repaired {:?}", report.repaired);

    let records = Table::open(&state)
        .unwrap()
        .exports()
        .expect("every record is whole");
    assert!(
        records.iter().all(|r| r.state == RecordState::Ready),
        "unfinished records remain: {records:?}"
    );
    let in_table: BTreeSet<String> = records.iter().map(|r| r.name.to_string()).collect();
    for (name, op) in &acked {
        match op {
            Op::Create | Op::Grant => assert!(
                in_table.contains(name),
                "acknowledged create of {name} was lost"
            ),
            Op::Delete => assert!(
                !in_table.contains(name),
                "acknowledged delete of {name} came back"
            ),
        }
    }
    let exporter = rwxnfs_agent::exporter::ganesha::GaneshaExporter::new(
        rwxnfs_agent::exporter::ganesha::GaneshaSettings {
            dbus_address: Some(bus.address()),
            name_prefix: Some("crash".into()),
            conf_dir: state.join("ganesha"),
            protocols: vec![4],
        },
    )
    .unwrap();
    let active = exporter.active().await.unwrap();
    rwxnfs_testbed::assert_ganesha_serves_the_table(&state, &active);
    let leftover: Vec<_> = std::fs::read_dir(root.join("volumes"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    for name in &leftover {
        assert!(
            in_table.contains(name),
            "volume directory {name} has no record (orphan)"
        );
    }
}
