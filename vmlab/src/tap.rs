//! A port onto the lab network for programs on this machine, kept out of its root namespace.
//!
//! A [`LanPort`] is a network namespace of its own with a TAP device in it (`lan0`, at
//! 10.99.0.N/24) whose frames it copies to and from the lab's [`Hub`](crate::Hub), as one more
//! peer beside the VMs. Programs started with [`LanPort::command`], and sockets made inside
//! [`LanPort::within`], reach the VMs at their LAN addresses and are reached by them; the
//! machine's own interfaces, addresses and routes are never touched.
//!
//! The TAP device is not persistent: it lives as long as the file descriptor this module opens,
//! so nothing of it outlives the port, and the namespace is deleted when the port drops.
#![allow(unsafe_code)] // the TUNSETIFF ioctl, which neither std nor nix wraps

use std::{
    ffi::OsStr,
    fs::File,
    io::{self, BufReader, Read, Write},
    net::{Ipv4Addr, Shutdown, TcpStream},
    os::{
        fd::{AsFd, AsRawFd},
        unix::net::UnixStream,
    },
    path::PathBuf,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    thread::{self, JoinHandle},
};

use nix::{
    errno::Errno,
    poll::{PollFd, PollFlags, PollTimeout, poll},
    sched::{CloneFlags, setns},
};

use crate::Lab;

/// The TAP device's name inside the namespace (the only device there besides `lo`).
const DEVICE: &str = "lan0";

/// As the hub's limit: anything longer is not an Ethernet frame.
const MAX_FRAME: usize = 65_536 + 18;

static COUNTER: AtomicU32 = AtomicU32::new(0);

#[derive(Debug, thiserror::Error)]
pub enum LanPortError {
    #[error("10.99.0.{0} is not a host address on the lab network (1 to 254)")]
    Address(u8),
    #[error("ip (iproute2) could not be run, install it: {0}")]
    IpMissing(#[source] io::Error),
    #[error("`ip {args}` failed: {stderr}")]
    Ip { args: String, stderr: String },
    #[error("network namespace {netns}: {source}")]
    Netns { netns: String, source: io::Error },
    #[error("TAP device {DEVICE} in {netns}: {source}")]
    Tap { netns: String, source: io::Error },
    #[error("the lab's hub at 127.0.0.1:{port}: {source}")]
    Hub { port: u16, source: io::Error },
}

/// A network namespace on the lab network. Dropping it stops the copying, removes the TAP
/// device and deletes the namespace.
pub struct LanPort {
    address: Ipv4Addr,
    hub: TcpStream,
    /// A byte written here wakes the thread that waits for frames from the TAP device.
    wake: UnixStream,
    threads: Vec<JoinHandle<()>>,
    // Dropped after the threads have ended, so the device has gone with its descriptor.
    netns: Namespace,
}

impl LanPort {
    /// A new namespace (named after `label` and this process) whose `lan0` has 10.99.0.`host`/24
    /// on `lab`'s network. The other hosts there are the lab's VMs: `host` must differ from
    /// their [`VmSpec::lan`](crate::VmSpec::lan).
    pub fn open(lab: &Lab, label: &str, host: u8) -> Result<LanPort, LanPortError> {
        if host == 0 || host == 255 {
            return Err(LanPortError::Address(host));
        }
        let address = Ipv4Addr::new(10, 99, 0, host);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let netns = Namespace::add(format!("rwx-{}-lan{n}-{label}", std::process::id()))?;
        netns.ip(&["link", "set", "lo", "up"])?;
        let tap = netns
            .within(open_tap)?
            .map_err(|source| LanPortError::Tap {
                netns: netns.name.clone(),
                source,
            })?;
        netns.ip(&["addr", "add", &format!("{address}/24"), "dev", DEVICE])?;
        netns.ip(&["link", "set", DEVICE, "up"])?;

        // Made here, in the caller's namespace: the hub listens on the root namespace's
        // loopback, and a socket stays in the namespace it was made in.
        let port = lab.hub_port();
        let hub_error = |source| LanPortError::Hub { port, source };
        let hub = TcpStream::connect(("127.0.0.1", port)).map_err(hub_error)?;
        // Frames are written whole; API traffic is many small ones, which must not wait.
        hub.set_nodelay(true).map_err(hub_error)?;
        let (wake, woken) = UnixStream::pair().map_err(hub_error)?;
        let threads = start_copying(label, tap, &hub, &wake, woken).map_err(hub_error)?;
        Ok(LanPort {
            address,
            hub,
            wake,
            threads,
            netns,
        })
    }

    /// The namespace's address on the lab network (10.99.0.N).
    pub fn address(&self) -> Ipv4Addr {
        self.address
    }

    /// The name `ip netns` knows the namespace by.
    pub fn netns_name(&self) -> &str {
        &self.netns.name
    }

    /// Routes `cidr` (e.g. a node's pod network, `10.244.1.0/24`) through `via`, a VM's LAN
    /// address.
    pub fn add_route(&self, cidr: &str, via: Ipv4Addr) -> Result<(), LanPortError> {
        self.netns
            .ip(&["route", "add", cidr, "via", &via.to_string()])
    }

    /// `program`, to be run inside the namespace. It keeps this process's mount namespace
    /// (`nsenter --net`, not `ip netns exec`, which makes a private one and remounts `/sys`).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net={}", self.netns.path().display()))
            .arg("--")
            .arg(program);
        command
    }

    /// Runs `f` on a thread that has joined the namespace, for sockets bound or connected there
    /// (a socket keeps the namespace it was made in, whichever thread uses it later).
    pub fn within<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, LanPortError> {
        self.netns.within(f)
    }
}

impl Drop for LanPort {
    fn drop(&mut self) {
        let _ = (&self.wake).write(&[0]);
        let _ = self.hub.shutdown(Shutdown::Both);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A network namespace made with `ip netns add`, deleted on drop.
struct Namespace {
    name: String,
}

impl Namespace {
    fn add(name: String) -> Result<Namespace, LanPortError> {
        run_ip(&["netns", "add", &name])?;
        Ok(Namespace { name })
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    fn ip(&self, args: &[&str]) -> Result<(), LanPortError> {
        run_ip(&[&["-n", self.name.as_str()], args].concat())
    }

    fn within<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, LanPortError> {
        let netns_error = |source| LanPortError::Netns {
            netns: self.name.clone(),
            source,
        };
        let ns = File::open(self.path()).map_err(netns_error)?;
        // A thread of its own: setns moves only the calling thread, and this one ends with `f`.
        let joined = thread::scope(|scope| {
            scope
                .spawn(move || -> io::Result<T> {
                    setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)?;
                    Ok(f())
                })
                .join()
        });
        match joined {
            Ok(result) => result.map_err(netns_error),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = run_ip(&["netns", "del", &self.name]);
    }
}

fn run_ip(args: &[&str]) -> Result<(), LanPortError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(LanPortError::IpMissing)?;
    if out.status.success() {
        return Ok(());
    }
    Err(LanPortError::Ip {
        args: args.join(" "),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

/// `struct ifreq` as TUNSETIFF reads it: the name, the flags, and the rest of the union.
#[repr(C)]
struct TunRequest {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _rest: [u8; 22],
}

const _: () = assert!(size_of::<TunRequest>() == size_of::<libc::ifreq>());

/// Creates the TAP device in the calling thread's namespace (the one `/dev/net/tun` is opened
/// in): Ethernet frames, without the packet-information header.
fn open_tap() -> io::Result<File> {
    let tun = File::options()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    let mut request = TunRequest {
        name: [0; libc::IFNAMSIZ],
        flags: (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short,
        _rest: [0; 22],
    };
    request.name[..DEVICE.len()].copy_from_slice(DEVICE.as_bytes());
    // SAFETY: TUNSETIFF reads and writes back one `struct ifreq`; `request` has its layout and
    // size (checked above), lives across the call and is not aliased; the fd is open.
    let rc = unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &mut request) };
    Errno::result(rc)?;
    Ok(tun)
}

/// The two threads that copy frames, one each way.
fn start_copying(
    label: &str,
    tap: File,
    hub: &TcpStream,
    wake: &UnixStream,
    woken: UnixStream,
) -> io::Result<Vec<JoinHandle<()>>> {
    let tap = Arc::new(tap);
    let (inbound, outbound, hub_gone) = (hub.try_clone()?, hub.try_clone()?, wake.try_clone()?);
    let into_tap = tap.clone();
    let threads = vec![
        thread::Builder::new()
            .name(format!("lan-{label}-in"))
            .spawn(move || hub_to_tap(inbound, &into_tap, hub_gone))?,
        thread::Builder::new()
            .name(format!("lan-{label}-out"))
            .spawn(move || tap_to_hub(&tap, outbound, woken))?,
    ];
    Ok(threads)
}

/// Frames the namespace sends, to the hub, until the hub goes or the port is dropped.
fn tap_to_hub(tap: &File, mut hub: TcpStream, woken: UnixStream) {
    let mut frame = vec![0u8; 4 + MAX_FRAME];
    loop {
        let mut fds = [
            PollFd::new(tap.as_fd(), PollFlags::POLLIN),
            PollFd::new(woken.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(_) => return,
        }
        if fds[1].any() != Some(false) {
            return;
        }
        let len = match (&*tap).read(&mut frame[4..]) {
            Ok(len) => len,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) =>
            {
                continue;
            }
            Err(_) => return,
        };
        frame[..4].copy_from_slice(&(len as u32).to_be_bytes());
        if hub.write_all(&frame[..4 + len]).is_err() {
            return;
        }
    }
}

/// Frames from the hub (every other peer's), to the namespace, until the hub goes or the port
/// is dropped; then wakes the other direction.
fn hub_to_tap(hub: TcpStream, tap: &File, hub_gone: UnixStream) {
    let mut hub = BufReader::with_capacity(1 << 18, hub);
    let mut frame = vec![0u8; MAX_FRAME];
    loop {
        let mut len = [0u8; 4];
        if hub.read_exact(&mut len).is_err() {
            break;
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_FRAME || hub.read_exact(&mut frame[..len]).is_err() {
            break;
        }
        // A frame the device refuses (while it is down, say) is lost, as on a wire.
        let _ = (&*tap).write(&frame[..len]);
    }
    let _ = (&hub_gone).write(&[0]);
}
