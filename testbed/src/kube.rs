//! A Kubernetes control plane on loopback, for tests: etcd (Debian's `etcd-server`), and
//! kube-apiserver and kube-controller-manager built by `scripts/tools` at the version
//! `tools/versions` pins, with certificates of their own and an admin kubeconfig. RBAC is on,
//! so whatever runs with a service account's token gets exactly what its Role grants.
//!
//! There is no kubelet and no scheduler: tests create Node objects themselves and bind Pods
//! with `nodeName`. The controllers that would evict Pods from such kubelet-less Nodes
//! (node-lifecycle, taint-eviction) are off; every other controller of the release runs,
//! among them the PV binder, the attach-detach controller and the expander.
//!
//! Everything is killed (by PID, newest first) when the [`ControlPlane`] drops.

use std::{
    io::Write,
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use crate::{Pki, Process, free_port, key_pair_pem, require, upstream};

pub struct ControlPlane {
    dir: PathBuf,
    /// The admin's kubeconfig (group system:masters).
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:PORT`.
    pub server: String,
    /// The CA that signed the API server's certificate.
    pub ca: PathBuf,
    bin: PathBuf,
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
        require(&["etcd"]);
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
                "10.0.0.1",
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

        let mut plane = ControlPlane {
            dir: dir.to_path_buf(),
            kubeconfig: dir.join("admin.kubeconfig"),
            server: String::new(),
            ca,
            bin,
            processes: Vec::new(),
        };
        let etcd = plane.start_etcd();
        let port = free_port();
        plane.server = format!("https://127.0.0.1:{port}");
        let p = |f: &str| dir.join(f).display().to_string();
        plane.spawn(
            "kube-apiserver",
            Command::new(plane.bin.join("kube-apiserver")).args([
                format!("--etcd-servers={etcd}"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
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
                "--service-cluster-ip-range=10.0.0.0/24".into(),
                "--authorization-mode=RBAC".into(),
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
        plane.spawn(
            "kube-controller-manager",
            Command::new(plane.bin.join("kube-controller-manager")).args([
                format!("--kubeconfig={admin}"),
                format!("--authentication-kubeconfig={admin}"),
                format!("--authorization-kubeconfig={admin}"),
                "--leader-elect=false".into(),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={}", free_port()),
                format!(
                    "--service-account-private-key-file={}",
                    p("service-account.key")
                ),
                format!("--root-ca-file={}", p("ca.pem")),
                "--use-service-account-credentials=false".into(),
                "--controllers=*,-node-lifecycle-controller,-taint-eviction-controller".into(),
            ]),
        );
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
        let (client, peer) = (free_port(), free_port());
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        self.spawn(
            "etcd",
            Command::new("etcd").args([
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
        self.wait("etcd", Duration::from_secs(30), |_| {
            TcpStream::connect(("127.0.0.1", client)).is_ok()
        });
        client_url
    }

    /// Starts a process whose output goes to `<dir>/<name>.log`; it is killed when the control
    /// plane drops.
    pub fn spawn(&mut self, name: &str, command: &mut Command) {
        let process = Process::spawn(
            name,
            command
                .stdin(Stdio::null())
                .stdout(log(&self.dir, name))
                .stderr(log(&self.dir, &format!("{name}.err"))),
        );
        self.processes.push(process);
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
        Command::new(self.kubectl_path())
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
        let mut child = Command::new(self.kubectl_path())
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
