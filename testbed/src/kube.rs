//! A Kubernetes control plane on loopback, for tests: etcd (Debian's `etcd-server`), and
//! kube-apiserver and kube-controller-manager built by `scripts/tools` at the version
//! `tools/versions` pins, with certificates of their own and an admin kubeconfig. RBAC is on,
//! so whatever runs with a service account's token gets exactly what its Role grants.
//!
//! [`ControlPlane::start`] runs on loopback with no kubelet and no scheduler: tests create
//! Node objects themselves and bind Pods with `nodeName`. The controllers that would evict
//! Pods from such kubelet-less Nodes (node-lifecycle, taint-eviction) are off; every other
//! controller of the release runs, among them the PV binder, the attach-detach controller and
//! the expander.
//!
//! [`ControlPlane::start_on`] runs the same inside the network namespace of a
//! [`LanPort`], on the VM lab's network, for real kubelets in the VMs: the API server is at
//! the port's address (the `kubernetes` Service's endpoint, which pods reach through
//! kube-proxy), authorizes kubelets as Nodes, and reaches them for exec and logs with a
//! client certificate; the scheduler runs, and every controller.
//!
//! Everything is killed (by PID, newest first) when the [`ControlPlane`] drops.

use std::{
    io::Write,
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use rwxnfs_vmlab::LanPort;

use crate::{Pki, Process, free_port, key_pair_pem, require, upstream};

pub struct ControlPlane {
    dir: PathBuf,
    /// The admin's kubeconfig (group system:masters).
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:PORT`, or `https://ADDRESS:6443` on a lab network.
    pub server: String,
    /// The CA that signed the API server's certificate, and every client's.
    pub ca: PathBuf,
    pki: Pki,
    bin: PathBuf,
    /// The network namespace every component runs in, on a lab network.
    netns: Option<String>,
    processes: Vec<Process>,
}

/// Where a component's output goes.
fn log(dir: &Path, name: &str) -> Stdio {
    std::fs::File::create(dir.join(format!("{name}.log")))
        .map(Stdio::from)
        .unwrap_or_else(|e| panic!("cannot create {name}.log: {e}"))
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

impl ControlPlane {
    /// Starts etcd, the API server and the controller manager under `dir`, and waits until
    /// the API server is ready and the controller manager has made the default namespace's
    /// service account.
    pub fn start(dir: &Path) -> ControlPlane {
        ControlPlane::start_in(dir, None)
    }

    /// Starts the control plane inside `lan`'s network namespace, at its address, for
    /// kubelets on the lab network; waits as [`ControlPlane::start`] does and for the
    /// scheduler.
    pub fn start_on(dir: &Path, lan: &LanPort) -> ControlPlane {
        ControlPlane::start_in(dir, Some(lan))
    }

    fn start_in(dir: &Path, lan: Option<&LanPort>) -> ControlPlane {
        require(&["etcd"]);
        let address = lan.map_or("127.0.0.1".to_string(), |l| l.address().to_string());
        let bin = upstream::tool("kubernetes", "kube-apiserver")
            .parent()
            .expect("a directory")
            .to_path_buf();
        std::fs::create_dir_all(dir).expect("the control plane's directory");
        let pki = Pki::new("rwxnfs-test-kubernetes-ca");
        let ca = dir.join("ca.pem");
        write(&ca, &pki.ca_pem);
        let (cert, key) = pki.issue_for(
            "kube-apiserver",
            None,
            &[
                "127.0.0.1",
                &address,
                "10.0.0.1",
                "10.96.0.1",
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
        );
        write(&dir.join("apiserver.pem"), &cert);
        write(&dir.join("apiserver.key"), &key);
        let (cert, key) = pki.issue_for("admin", Some("system:masters"), &["admin"]);
        write(&dir.join("admin.pem"), &cert);
        write(&dir.join("admin.key"), &key);
        let (private, public) = key_pair_pem();
        write(&dir.join("service-account.key"), &private);
        write(&dir.join("service-account.pub"), &public);

        let (cert, key) = pki.issue_for(
            "kube-apiserver-kubelet-client",
            Some("system:masters"),
            &["kube-apiserver-kubelet-client"],
        );
        write(&dir.join("kubelet-client.pem"), &cert);
        write(&dir.join("kubelet-client.key"), &key);

        let mut plane = ControlPlane {
            dir: dir.to_path_buf(),
            kubeconfig: dir.join("admin.kubeconfig"),
            server: String::new(),
            ca,
            pki,
            bin,
            netns: lan.map(|l| l.netns_name().to_string()),
            processes: Vec::new(),
        };
        let etcd = plane.start_etcd();
        // Inside a namespace of its own every port is free: the well-known ones.
        let port = if lan.is_some() { 6443 } else { free_port() };
        plane.server = format!("https://{address}:{port}");
        let p = |f: &str| dir.join(f).display().to_string();
        let mut apiserver = plane.command(plane.bin.join("kube-apiserver"));
        if lan.is_some() {
            apiserver.args([
                "--service-cluster-ip-range=10.96.0.0/16".into(),
                "--authorization-mode=Node,RBAC".into(),
                format!("--kubelet-client-certificate={}", p("kubelet-client.pem")),
                format!("--kubelet-client-key={}", p("kubelet-client.key")),
                // The kubelets are reached at their Node's address (nothing here resolves
                // the node names).
                "--kubelet-preferred-address-types=InternalIP".into(),
            ]);
        } else {
            apiserver.args([
                "--service-cluster-ip-range=10.0.0.0/24",
                "--authorization-mode=RBAC",
            ]);
        }
        plane.spawn(
            "kube-apiserver",
            apiserver.args([
                format!("--etcd-servers={etcd}"),
                format!("--bind-address={address}"),
                format!("--advertise-address={address}"),
                format!("--secure-port={port}"),
                format!("--cert-dir={}", p("apiserver-certs")),
                format!("--tls-cert-file={}", p("apiserver.pem")),
                format!("--tls-private-key-file={}", p("apiserver.key")),
                format!("--client-ca-file={}", p("ca.pem")),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                format!("--service-account-key-file={}", p("service-account.pub")),
                format!(
                    "--service-account-signing-key-file={}",
                    p("service-account.key")
                ),
                "--allow-privileged=true".into(),
                "--profiling=false".into(),
            ]),
        );
        plane.write_kubeconfig(
            &plane.kubeconfig,
            &format!(
                "    client-certificate: {}\n    client-key: {}\n",
                p("admin.pem"),
                p("admin.key")
            ),
        );
        let started = Instant::now();
        plane.wait(
            "the API server to be ready",
            Duration::from_secs(180),
            |cp| cp.kubectl(&["get", "--raw", "/readyz"]).status.success(),
        );
        let ready = started.elapsed();
        let admin = p("admin.kubeconfig");
        // Real kubelets: every controller, node lifecycle and eviction among them.
        let controllers = if lan.is_some() {
            "*"
        } else {
            "*,-node-lifecycle-controller,-taint-eviction-controller"
        };
        let kcm_port = if lan.is_some() { 10257 } else { free_port() };
        let mut kcm = plane.command(plane.bin.join("kube-controller-manager"));
        plane.spawn(
            "kube-controller-manager",
            kcm.args([
                format!("--kubeconfig={admin}"),
                format!("--authentication-kubeconfig={admin}"),
                format!("--authorization-kubeconfig={admin}"),
                "--leader-elect=false".into(),
                format!("--bind-address={address}"),
                format!("--secure-port={kcm_port}"),
                format!(
                    "--service-account-private-key-file={}",
                    p("service-account.key")
                ),
                format!("--root-ca-file={}", p("ca.pem")),
                "--use-service-account-credentials=false".into(),
                format!("--controllers={controllers}"),
            ]),
        );
        if lan.is_some() {
            let mut scheduler = plane.command(plane.bin.join("kube-scheduler"));
            plane.spawn(
                "kube-scheduler",
                scheduler.args([
                    format!("--kubeconfig={admin}"),
                    format!("--authentication-kubeconfig={admin}"),
                    format!("--authorization-kubeconfig={admin}"),
                    "--leader-elect=false".into(),
                    format!("--bind-address={address}"),
                    "--secure-port=10259".into(),
                ]),
            );
        }
        plane.wait(
            "the controller manager (the default service account)",
            Duration::from_secs(120),
            |cp| {
                cp.kubectl(&["get", "serviceaccount", "default", "-n", "default"])
                    .status
                    .success()
            },
        );
        println!(
            "control plane: API server ready in {ready:?}, controller manager in {:?}",
            started.elapsed()
        );
        plane
    }

    fn start_etcd(&mut self) -> String {
        let (client, peer) = if self.netns.is_some() {
            (2379, 2380)
        } else {
            (free_port(), free_port())
        };
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut etcd = self.command("etcd");
        self.spawn(
            "etcd",
            etcd.args([
                "--name=test".into(),
                format!("--data-dir={}", self.dir.join("etcd").display()),
                format!("--listen-client-urls={client_url}"),
                format!("--advertise-client-urls={client_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=test={peer_url}"),
                // A test's cluster: nothing here needs to survive a power cut.
                "--unsafe-no-fsync".into(),
            ]),
        );
        // In a namespace, the API server's readiness (which needs etcd) is the check.
        if self.netns.is_none() {
            self.wait("etcd", Duration::from_secs(30), |_| {
                TcpStream::connect(("127.0.0.1", client)).is_ok()
            });
        }
        client_url
    }

    /// A command for `program` where the control plane runs: inside its network namespace,
    /// if it has one.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        match &self.netns {
            Some(netns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{netns}"))
                    .arg("--")
                    .arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    /// A client certificate and key signed by the cluster's CA, for `name` in `group`.
    pub fn issue(&self, name: &str, group: Option<&str>) -> (String, String) {
        self.pki.issue_for(name, group, &[name])
    }

    /// A kubeconfig (as text) for a client with the certificate and key at these paths, as a
    /// program where the paths are valid reads it.
    pub fn kubeconfig_text(&self, ca: &str, cert: &str, key: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: {}\n    certificate-authority: {ca}\nusers:\n- name: user\n  user:\n    client-certificate: {cert}\n    client-key: {key}\ncontexts:\n- name: lab\n  context: {{cluster: lab, user: user}}\ncurrent-context: lab\n",
            self.server
        )
    }

    /// Starts a process whose output goes to `<dir>/<name>.log`; it is killed when the control
    /// plane drops.
    pub fn spawn(&mut self, name: &str, command: &mut Command) {
        let process = self.start_process(name, command);
        self.processes.push(process);
    }

    /// Starts a process whose output goes to `<dir>/<name>.log` (stderr to `<name>.err.log`),
    /// owned by the caller: for one that a test kills on its own.
    pub fn start_process(&self, name: &str, command: &mut Command) -> Process {
        Process::spawn(
            name,
            command
                .stdin(Stdio::null())
                .stdout(log(&self.dir, name))
                .stderr(log(&self.dir, &format!("{name}.err"))),
        )
    }

    /// Writes a kubeconfig for this cluster with `user` (the lines of a `user:` block).
    pub fn write_kubeconfig(&self, path: &Path, user: &str) {
        write(
            path,
            &format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: user\n  user:\n{user}contexts:\n- name: test\n  context: {{cluster: test, user: user}}\ncurrent-context: test\n",
                self.server,
                self.ca.display()
            ),
        );
    }

    /// A kubeconfig under this control plane's directory that acts as service account
    /// `namespace/name`, with a token from the TokenRequest API.
    pub fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> PathBuf {
        let token = self.kubectl_ok(&["create", "token", name, "-n", namespace, "--duration=2h"]);
        let path = self.dir.join(format!("{namespace}-{name}.kubeconfig"));
        self.write_kubeconfig(&path, &format!("    token: {}\n", token.trim()));
        path
    }

    /// The built kubectl, for commands a test wants to run itself.
    pub fn kubectl_path(&self) -> PathBuf {
        self.bin.join("kubectl")
    }

    /// Where the control plane keeps its files and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs kubectl as the admin.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.command(self.kubectl_path())
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl")
    }

    /// Runs kubectl as the admin and returns its output; fails the test when it fails.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl VERB -f -` with `yaml` on standard input (VERB: apply, create, delete, ...,
    /// with any further arguments); returns the output, or the error output on failure.
    pub fn kubectl_stdin(&self, args: &[&str], yaml: &str) -> Result<String, String> {
        let mut child = self
            .command(self.kubectl_path())
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(yaml.as_bytes())
            .expect("write to kubectl");
        let out = child.wait_with_output().expect("kubectl's output");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// `kubectl apply -f -`; fails the test when the API server refuses.
    pub fn apply(&self, yaml: &str) {
        if let Err(e) = self.kubectl_stdin(&["apply"], yaml) {
            panic!("kubectl apply: {e}\n{yaml}");
        }
    }

    /// `kubectl get ARGS -o jsonpath=PATH`, or "" when the object is not there (yet).
    pub fn jsonpath(&self, args: &[&str], path: &str) -> String {
        let mut all = args.to_vec();
        let output = format!("-o=jsonpath={path}");
        all.push(&output);
        let out = self.kubectl(&all);
        if out.status.success() {
            String::from_utf8_lossy(&out.stdout).into_owned()
        } else {
            String::new()
        }
    }

    /// Polls `jsonpath` until `want` holds for its value; returns the time it took. Fails the
    /// test, with the value last seen, after `limit`.
    pub fn wait_jsonpath(
        &self,
        args: &[&str],
        path: &str,
        limit: Duration,
        want: impl Fn(&str) -> bool,
    ) -> Duration {
        let started = Instant::now();
        loop {
            let value = self.jsonpath(args, path);
            if want(&value) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "kubectl get {} {path}: still {value:?} after {limit:?}",
                args.join(" ")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait(&mut self, what: &str, limit: Duration, mut ready: impl FnMut(&ControlPlane) -> bool) {
        let started = Instant::now();
        while !ready(self) {
            for p in &mut self.processes {
                if !p.is_running() {
                    let name = p.name.clone();
                    crate::dump(&name, &self.dir.join(format!("{name}.err.log")));
                    panic!("{name} exited while waiting for {what}");
                }
            }
            if started.elapsed() > limit {
                for p in &self.processes {
                    crate::dump(&p.name, &self.dir.join(format!("{}.err.log", p.name)));
                }
                panic!("timed out after {limit:?} waiting for {what}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        while let Some(mut p) = self.processes.pop() {
            p.kill();
        }
    }
}
