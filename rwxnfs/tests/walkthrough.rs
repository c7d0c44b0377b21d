//! `rwxnfs walkthrough`, the README's first command, end to end: the same run a newcomer sees.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn the_walkthrough_runs_every_step_and_leaves_nothing_behind() {
    let out = Command::new(env!("CARGO_BIN_EXE_rwxnfs"))
        .args(["walkthrough", "--tail-seconds", "6"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    assert!(out.status.success(), "exit {:?}\n{stderr}", out.status);
    for step in 1..=11 {
        assert!(
            stdout.contains(&format!("[{step:>2}/11]")),
            "step {step} missing"
        );
    }
    assert_eq!(
        stdout.matches("        ok, ").count(),
        11,
        "every step ends ok"
    );
    // Both writers' lines arrive in the one file: the count taken at clean-up. (What the
    // 6 s tail on node-a shows of node-b's lines depends on the NFS client's attribute cache
    // and on the machine's load: under load it once showed node-a's line alone.)
    assert!(
        stdout.contains("|   node-a 20"),
        "the tail shows the lines arriving"
    );
    let counts = stdout
        .lines()
        .find_map(|l| {
            l.split_once("test-file.txt: ")
                .map(|(_, rest)| rest.to_owned())
        })
        .expect("the clean-up counts the lines");
    let from = |node: &str| -> usize {
        counts
            .split(&format!(" from {node}"))
            .next()
            .and_then(|before| before.rsplit([' ', '(']).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    assert!(
        from("node-a") >= 1 && from("node-b") >= 1,
        "lines from both nodes: {counts}"
    );
    // The export admits node-a and node-b, and refuses node-c.
    assert!(stdout.contains("10.99.0.11(") && stdout.contains("10.99.0.12("));
    assert!(!stdout.contains("10.99.0.13("));
    assert!(stdout.contains("NodeStageVolume on node-c: PermissionDenied"));
    assert!(stdout.contains("hard limit of 4G"));
    assert!(stdout.contains("capacity 8 GiB"));
    assert!(stdout.contains("no NFS mount on any node, no export on the server"));
    assert!(stdout.contains("\nsummary\n") && stdout.contains("  total "));
    let left = Command::new("pgrep")
        .args(["-f", "vm/walkthrough"])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "left running: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

#[test]
fn a_failed_step_says_which_why_and_where_the_logs_are() {
    let out = Command::new(env!("CARGO_BIN_EXE_rwxnfs"))
        .args(["walkthrough", "--state-dir", "/proc/rwxnfs-cannot-be-here"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("step 1 (Build the VM image"), "{stderr}");
    assert!(
        stderr.contains("logs of every VM: /proc/rwxnfs-cannot-be-here/vm/walkthrough"),
        "{stderr}"
    );
}
