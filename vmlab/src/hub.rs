//! An Ethernet hub on loopback for QEMU's `-netdev socket,connect=`: every frame one VM sends
//! goes to every other VM, so any number of VMs share one private segment (two NFS servers
//! and a client for failover, say), and nothing of it leaves this machine.
//!
//! QEMU frames each Ethernet frame on the stream with its length as a 4-byte big-endian
//! prefix.

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
};

/// Frames larger than this are not Ethernet: the peer is not QEMU, so it is dropped.
const MAX_FRAME: usize = 65_536 + 18;

type Ports = Arc<Mutex<Vec<(u64, TcpStream)>>>;

pub struct Hub {
    port: u16,
    ports: Ports,
    stop: Arc<AtomicBool>,
}

impl Hub {
    pub fn start() -> Hub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the hub on loopback");
        let port = listener.local_addr().expect("the hub's address").port();
        let ports: Ports = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (accepted, stopping) = (ports.clone(), stop.clone());
        thread::spawn(move || {
            for (id, stream) in (0u64..).zip(listener.incoming()) {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let Ok(writer) = stream.try_clone() else {
                    continue;
                };
                accepted.lock().expect("hub ports").push((id, writer));
                let peers = accepted.clone();
                thread::spawn(move || forward(id, stream, peers));
            }
        });
        Hub { port, ports, stop }
    }

    /// The loopback port VMs connect to.
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// Copies one VM's frames to all the others until it disconnects.
fn forward(id: u64, mut stream: TcpStream, ports: Ports) {
    let mut frame = vec![0u8; MAX_FRAME + 4];
    loop {
        if stream.read_exact(&mut frame[..4]).is_err() {
            break;
        }
        let len = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        if len > MAX_FRAME || stream.read_exact(&mut frame[4..4 + len]).is_err() {
            break;
        }
        let mut peers = ports.lock().expect("hub ports");
        // A peer that cannot take a frame has gone (its VM was killed): forget it.
        peers.retain_mut(|(other, out)| *other == id || out.write_all(&frame[..4 + len]).is_ok());
    }
    ports
        .lock()
        .expect("hub ports")
        .retain(|(other, _)| *other != id);
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        for (_, stream) in self.ports.lock().expect("hub ports").drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}
