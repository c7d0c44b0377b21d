//! QEMU VMs (software emulation) booted from Debian's kernel (bookworm's 6.1 or trixie's
//! 6.12) with the image that `tests/vm/build-image` makes from that release's packages, joined
//! by a private network on loopback; and a CSI client for the controller and node plugins running in them. The real-kernel test
//! tier and `rwxnfs walkthrough` are built on it.

mod csi;
mod hub;
mod image;
mod lab;
pub mod oci;
pub mod pcap;
pub mod recipes;
mod tap;

pub use csi::{Csi, MIB, Mounted, mount_capability, ready};
pub use hub::Hub;
pub use image::{Image, Kernel};
pub use lab::{Lab, Output, Vm, VmSpec};
pub use tap::{LanPort, LanPortError};

/// A free TCP port on loopback (bound once, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on loopback")
}
