//! The tickle, on the real kernel's TCP: an "old host" and a "new host" in network namespaces
//! of their own, a client in a third, the cluster's address moved from the one to the other
//! while the old host is cut off (its connections left half-open, as when a host dies).

use std::{
    io::Write,
    net::{SocketAddr, TcpListener, TcpStream},
    process::Command,
    sync::mpsc,
    time::{Duration, Instant},
};

use rwxnfs_agent::tickle::{self, Connection, NFS_PORT};
use rwxnfs_testbed::{Netns, require};

const VIP: &str = "10.77.63.100";

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `host` takes the cluster's address (on its loopback, routed to by the client).
fn take_vip(host: &Netns) {
    ip(&[
        "-n",
        &host.name,
        "addr",
        "add",
        &format!("{VIP}/32"),
        "dev",
        "lo",
    ]);
}

/// Writes a byte every 50 ms until a write fails; sends the time of the failure. Bounded: gives
/// up after 40 s.
fn writer(mut stream: TcpStream) -> mpsc::Receiver<Instant> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(40);
        while Instant::now() < end {
            if stream.write_all(b"x").is_err() {
                let _ = tx.send(Instant::now());
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    rx
}

#[test]
fn a_tickled_client_learns_at_once_that_its_connection_is_gone_and_an_untickled_one_does_not() {
    require(&["ip"]);
    let client = Netns::new("tk-client");
    let old = Netns::new("tk-old");
    let new = Netns::new("tk-new");
    let to_old = old.link(&client, 61);
    let to_new = new.link(&client, 62);
    take_vip(&old);
    ip(&[
        "-n",
        &client.name,
        "route",
        "add",
        &format!("{VIP}/32"),
        "via",
        &to_old.server,
    ]);

    let vip: SocketAddr = format!("{VIP}:{NFS_PORT}").parse().unwrap();
    let listener = old.within(|| TcpListener::bind(vip).expect("listen on the VIP"));
    let connect = || client.within(|| TcpStream::connect(vip).expect("connect to the VIP"));
    let (tickled, untickled) = (connect(), connect());
    let _served: Vec<TcpStream> = (0..2).map(|_| listener.accept().unwrap().0).collect();

    // What the old host's agent records: both connections, as the kernel lists them.
    let recorded = old.within(|| tickle::established(NFS_PORT).expect("/proc/net/tcp"));
    let expect = |s: &TcpStream| Connection {
        local: vip,
        remote: s.local_addr().unwrap(),
    };
    assert_eq!(
        recorded,
        [expect(&tickled), expect(&untickled)].into_iter().collect(),
        "the established connections to the NFS port"
    );

    let (gone_tickled, gone_untickled) = (
        writer(tickled.try_clone().unwrap()),
        writer(untickled.try_clone().unwrap()),
    );
    // The old host dies: nothing it sends gets out any more, nothing reaches it.
    ip(&["-n", &old.name, "link", "set", "vs61", "down"]);
    // Long enough for the clients' retransmission timeout to back off to several seconds.
    std::thread::sleep(Duration::from_secs(7));
    assert!(gone_tickled.try_recv().is_err() && gone_untickled.try_recv().is_err());

    // The new host takes the address, and tickles only the first connection.
    take_vip(&new);
    ip(&[
        "-n",
        &new.name,
        "route",
        "add",
        "10.77.61.0/24",
        "via",
        &to_new.client,
    ]);
    ip(&[
        "-n",
        &client.name,
        "route",
        "replace",
        &format!("{VIP}/32"),
        "via",
        &to_new.server,
    ]);
    let sent_at = Instant::now();
    let done = new.within(|| tickle::tickle(&[expect(&tickled)]));
    assert_eq!(
        (done.sent, done.not_here, done.failed.len()),
        (1, 0, 0),
        "{done:?}"
    );

    let reset = gone_tickled
        .recv_timeout(Duration::from_secs(3))
        .expect("the tickled client's connection was reset within 3 s of the tickle");
    let waited = reset - sent_at;
    assert!(
        gone_untickled.try_recv().is_err(),
        "the untickled client learnt as early: the tickle is not what did it"
    );
    eprintln!(
        "tickled connection reset {} ms after the tickle; the untickled one still waits for \
         its next retransmission",
        waited.as_millis()
    );

    // A connection to an address this host does not have is left alone.
    let elsewhere = Connection {
        local: format!("{}:{NFS_PORT}", to_old.server).parse().unwrap(),
        remote: tickled.local_addr().unwrap(),
    };
    let done = new.within(|| tickle::tickle(&[elsewhere]));
    assert_eq!((done.sent, done.not_here), (0, 1), "{done:?}");
}
