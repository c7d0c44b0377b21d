//! A [`LanPort`]: a network namespace on this machine, on the lab network beside a VM. It is
//! what a control plane run natively needs to reach kubelets in the VMs at their LAN addresses
//! and to be reached by their pods. One boot, then, in order: ping both ways; a connection
//! from the VM to a listener in the namespace and one from the namespace to a listener in the
//! VM, bytes checked each way; 20 MiB each way, timed; the namespace gone after the drop. And
//! two ports without a VM: a route through one to the other, and 100 MiB between them.
#![allow(clippy::unwrap_used)]

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    path::Path,
    thread,
    time::{Duration, Instant},
};

use rwxnfs_vmlab::{Lab, LanPort, Vm, VmSpec};

const BULK: usize = 20 << 20;

#[test]
fn a_lan_port_and_a_vm_reach_each_other_both_ways() {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    // The VM needs none of the project's binaries: it shares an empty directory instead.
    let bin_dir = tmp.join("lan-port-bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let mut lab = Lab::new("lan-port", tmp, &bin_dir.join("none"));
    let port = LanPort::open(&lab, "test", 100).unwrap();
    assert_eq!(port.address().to_string(), "10.99.0.100");
    let mut vm = lab.start(VmSpec {
        lan: Some(2),
        ..VmSpec::new("lan2")
    });
    println!(
        "lan2 booted in {:?}",
        vm.wait_ready(Duration::from_secs(180))
    );

    ping_both_ways(&port, &vm);
    vm_connects_to_the_namespace(&port, &vm);
    the_namespace_connects_to_the_vm(&port, &vm);
    bulk_from_the_vm(&port, &vm);
    bulk_to_the_vm(&port, &vm);

    let netns = port.netns_name().to_string();
    drop(port);
    assert!(
        !Path::new("/run/netns").join(&netns).exists(),
        "{netns} outlived its port"
    );
}

fn ping_both_ways(port: &LanPort, vm: &Vm) {
    let from_vm = vm.sh("ping -c 3 -W 10 10.99.0.100");
    println!("lan2 -> namespace: {}", last_line(&from_vm));
    let from_ns = port
        .command("busybox")
        .args(["ping", "-c", "3", "-W", "10", "10.99.0.2"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&from_ns.stdout);
    assert!(from_ns.status.success(), "ping from the namespace: {text}");
    println!("namespace -> lan2: {}", last_line(&text));
}

fn vm_connects_to_the_namespace(port: &LanPort, vm: &Vm) {
    let listener = port
        .within(|| TcpListener::bind("10.99.0.100:7000"))
        .unwrap()
        .unwrap();
    let server = thread::spawn(move || {
        let (mut stream, peer) = listener.accept().unwrap();
        let mut got = String::new();
        stream.read_to_string(&mut got).unwrap();
        stream.write_all(b"hello from the namespace\n").unwrap();
        (peer, got)
    });
    let out = vm.sh("echo hello from lan2 | nc 10.99.0.100 7000");
    let (peer, got) = server.join().unwrap();
    assert_eq!(peer.ip().to_string(), "10.99.0.2");
    assert_eq!(got, "hello from lan2\n");
    assert_eq!(out, "hello from the namespace\n");
}

fn the_namespace_connects_to_the_vm(port: &LanPort, vm: &Vm) {
    vm.sh("echo hello from lan2 | nc -l -p 7777 > /work/got-7777 2>&1 &");
    let mut stream = connect(port, "10.99.0.2:7777");
    assert_eq!(stream.local_addr().unwrap().ip().to_string(), "10.99.0.100");
    stream.write_all(b"hello from the namespace\n").unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "hello from lan2\n");
    let got = wait_for_file(vm, "got-7777");
    assert_eq!(got, "hello from the namespace\n");
}

fn bulk_from_the_vm(port: &LanPort, vm: &Vm) {
    let listener = port
        .within(|| TcpListener::bind("10.99.0.100:7001"))
        .unwrap()
        .unwrap();
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let started = Instant::now();
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0;
        loop {
            let n = stream.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            assert!(buf[..n].iter().all(|&b| b == 0), "bytes changed on the way");
            total += n;
        }
        (total, started.elapsed())
    });
    let script = format!(
        "dd if=/dev/zero bs=65536 count={} 2>/dev/null | nc 10.99.0.100 7001",
        BULK >> 16
    );
    let out = vm.run(&script, Duration::from_secs(600));
    assert_eq!(out.rc, 0, "{}", out.out);
    let (total, took) = server.join().unwrap();
    assert_eq!(total, BULK);
    println!("lan2 -> namespace: {}", rate(total, took));
}

fn bulk_to_the_vm(port: &LanPort, vm: &Vm) {
    vm.sh("nc -l -p 7002 < /dev/null | wc -c > /work/count-7002 &");
    let mut stream = connect(port, "10.99.0.2:7002");
    let started = Instant::now();
    let chunk = vec![0x5au8; 1 << 16];
    for _ in 0..BULK >> 16 {
        stream.write_all(&chunk).unwrap();
    }
    stream.shutdown(Shutdown::Write).unwrap();
    // The VM's nc closes once it has read everything.
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    let took = started.elapsed();
    assert_eq!(wait_for_file(vm, "count-7002").trim(), BULK.to_string());
    println!("namespace -> lan2: {}", rate(BULK, took));
}

/// A connection made from inside the namespace, retried while the VM's listener starts.
fn connect(port: &LanPort, addr: &str) -> TcpStream {
    let addr: SocketAddr = addr.parse().unwrap();
    let started = Instant::now();
    loop {
        match port
            .within(|| TcpStream::connect_timeout(&addr, Duration::from_secs(10)))
            .unwrap()
        {
            Ok(stream) => return stream,
            Err(e) => assert!(
                started.elapsed() < Duration::from_secs(30),
                "{addr} from the namespace: {e}"
            ),
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// A file the VM writes in its work directory, once it has content.
fn wait_for_file(vm: &Vm, name: &str) -> String {
    let path = vm.work().join(name);
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if !text.is_empty() {
            return text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{} stayed empty",
            path.display()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

fn rate(bytes: usize, took: Duration) -> String {
    let mib = bytes as f64 / f64::from(1 << 20);
    format!(
        "{mib:.0} MiB in {took:.1?} ({:.1} MiB/s)",
        mib / took.as_secs_f64()
    )
}

fn last_line(text: &str) -> &str {
    text.lines().last().unwrap_or_default()
}

/// Two ports, with a route through one to the other, and what the ports and the hub carry
/// without a VM's emulated CPU in the way.
#[test]
fn two_lan_ports_on_one_lab_reach_each_other() {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let bin_dir = tmp.join("lan-port-bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let lab = Lab::new("lan-ports", tmp, &bin_dir.join("none"));
    let a = LanPort::open(&lab, "a", 101).unwrap();
    let b = LanPort::open(&lab, "b", 102).unwrap();
    a.add_route("10.244.2.0/24", b.address()).unwrap();
    let routes = a.command("ip").args(["route", "show"]).output().unwrap();
    let routes = String::from_utf8_lossy(&routes.stdout);
    assert!(
        routes.contains("10.244.2.0/24 via 10.99.0.102 dev lan0"),
        "{routes}"
    );
    let listener = b
        .within(|| TcpListener::bind("10.99.0.102:7000"))
        .unwrap()
        .unwrap();
    let server = thread::spawn(move || {
        let (mut stream, peer) = listener.accept().unwrap();
        let mut total = 0;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = stream.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            total += n;
        }
        stream.write_all(b"done\n").unwrap();
        (peer, total)
    });
    let mut stream = connect(&a, "10.99.0.102:7000");
    let started = Instant::now();
    let chunk = vec![0x5au8; 1 << 16];
    for _ in 0..(5 * BULK) >> 16 {
        stream.write_all(&chunk).unwrap();
    }
    stream.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let took = started.elapsed();
    let (peer, total) = server.join().unwrap();
    assert_eq!(peer.ip().to_string(), "10.99.0.101");
    assert_eq!((total, reply.as_str()), (5 * BULK, "done\n"));
    println!("namespace a -> namespace b: {}", rate(total, took));
}
