//! Istio's traffic-capture rules on real connections: a network namespace standing for the
//! controller's pod, joined by a veth pair to one holding the VIP (the agent and NFS) and
//! another address (any other service the pod talks to, the Kubernetes API say). The rules
//! are installed by `pilot-agent istio-iptables` itself, as the injected init container runs
//! it; a listener on the proxy's port stands for Envoy and tells where a connection it caught
//! was going (SO_ORIGINAL_DST).

use std::{
    io::{BufRead, BufReader, Write},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use nix::sys::socket::{getsockopt, sockopt::OriginalDst};
use rwxnfs_testbed::Netns;

/// Envoy's outbound listener, where the rules send what they capture (`-p`).
pub(crate) const PROXY_PORT: u16 = 15001;
/// The port the other service listens on: a connection that is not excluded.
pub(crate) const OTHER_PORT: u16 = 443;
const TIMEOUT: Duration = Duration::from_secs(5);

/// Where a connection from the pod ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reached {
    /// The test server listening at this address answered: the connection went direct.
    Server(SocketAddr),
    /// The stand-in for Envoy answered; the connection was going to `original`.
    Proxy { original: SocketAddr },
}

/// The controller's pod and the hosts it talks to, with their servers listening.
pub(crate) struct PodNetwork {
    // Dropped first: the listeners stop before their namespaces go.
    _listeners: Vec<Listener>,
    pub pod: Netns,
    _remote: Netns,
    /// The other service's address (the remote side of the veth pair).
    pub other: Ipv4Addr,
}

impl PodNetwork {
    /// A pod on 10.77.`subnet`.2; the remote side, 10.77.`subnet`.1, also holds `vip`, where
    /// servers listen on `vip_ports`; one more listens on 10.77.`subnet`.1:443; and the pod
    /// has a listener on the proxy's port.
    pub(crate) fn new(label: &str, subnet: u8, vip: Ipv4Addr, vip_ports: &[u16]) -> Self {
        let remote = Netns::new(&format!("{label}-vip"));
        let pod = Netns::new(&format!("{label}-pod"));
        let link = remote.link(&pod, subnet);
        let other: Ipv4Addr = link.server.parse().expect("the link's address");
        run(remote
            .command("ip")
            .args(["addr", "add", &format!("{vip}/32"), "dev", "lo"]));
        run(pod
            .command("ip")
            .args(["route", "add", &format!("{vip}/32"), "via", &link.server]));
        let mut listeners: Vec<Listener> = vip_ports
            .iter()
            .map(|&port| Listener::server(&remote, SocketAddrV4::new(vip, port)))
            .collect();
        listeners.push(Listener::server(
            &remote,
            SocketAddrV4::new(other, OTHER_PORT),
        ));
        listeners.push(Listener::proxy(&pod));
        PodNetwork {
            _listeners: listeners,
            pod,
            _remote: remote,
            other,
        }
    }

    /// Runs Istio's rule generator in the pod with `args` (the init container's, `istio-iptables`
    /// first) and returns what it printed.
    pub(crate) fn install_rules(&self, pilot_agent: &Path, args: &[String]) -> String {
        let out = self
            .pod
            .command(pilot_agent.to_str().expect("a UTF-8 path"))
            .args(args)
            .output()
            .expect("run pilot-agent");
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "pilot-agent {} failed ({}):\n{printed}",
            args.join(" "),
            out.status
        );
        printed
    }

    /// The pod's nat table as `iptables-save` shows it, with the binary that holds the rules.
    pub(crate) fn nat_rules(&self, save: &str) -> String {
        let out = self
            .pod
            .command(save)
            .args(["-t", "nat"])
            .output()
            .unwrap_or_else(|e| panic!("{save} (Debian's iptables): {e}"));
        assert!(
            out.status.success(),
            "{save}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Connects from the pod to `to` and reads who answered.
    pub(crate) fn connect(&self, to: SocketAddrV4) -> Reached {
        self.pod.within(|| {
            let mut stream = TcpStream::connect_timeout(&to.into(), TIMEOUT)
                .unwrap_or_else(|e| panic!("connect to {to} from the pod: {e}"));
            stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
            let mut line = String::new();
            BufReader::new(&mut stream)
                .read_line(&mut line)
                .unwrap_or_else(|e| panic!("{to}: no greeting: {e}"));
            parse_greeting(line.trim()).unwrap_or_else(|| panic!("{to}: greeted {line:?}"))
        })
    }
}

fn parse_greeting(line: &str) -> Option<Reached> {
    let (who, addr) = line.split_once(' ')?;
    let addr = addr.parse().ok()?;
    match who {
        "server" => Some(Reached::Server(addr)),
        "proxy" => Some(Reached::Proxy { original: addr }),
        _ => None,
    }
}

fn run(command: &mut std::process::Command) {
    let out = command.output().expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A listener that greets every connection with one line saying who answered, until dropped.
struct Listener {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    fn server(netns: &Netns, addr: SocketAddrV4) -> Self {
        let listener = netns
            .within(|| TcpListener::bind(addr))
            .unwrap_or_else(|e| panic!("listen on {addr} in {}: {e}", netns.name));
        Self::serve(listener, move |_| format!("server {addr}"))
    }

    /// Envoy's stand-in: where the rules redirect a connection, and where it was going.
    fn proxy(netns: &Netns) -> Self {
        let addr = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PROXY_PORT);
        let listener = netns
            .within(|| TcpListener::bind(addr))
            .unwrap_or_else(|e| panic!("listen on {addr} in {}: {e}", netns.name));
        Self::serve(listener, |stream| {
            let original = getsockopt(stream, OriginalDst).expect("SO_ORIGINAL_DST");
            let ip = Ipv4Addr::from(u32::from_be(original.sin_addr.s_addr));
            format!(
                "proxy {}",
                SocketAddrV4::new(ip, u16::from_be(original.sin_port))
            )
        })
    }

    fn serve(listener: TcpListener, greet: impl Fn(&TcpStream) -> String + Send + 'static) -> Self {
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = writeln!(stream, "{}", greet(&stream));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Listener {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
