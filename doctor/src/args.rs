//! Reading a container's flags and environment the way the kubelet expands them.

use k8s_openapi::api::core::v1::Container;

/// The value of an environment variable given literally in the container.
pub fn env(c: &Container, name: &str) -> Option<String> {
    c.env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
}

/// Expands `$(VAR)` from the container's literal environment, as the kubelet does.
pub fn expand(c: &Container, raw: &str) -> String {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(start) = rest.find("$(") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find(')') {
            Some(end) => {
                let name = &after[..end];
                match env(c, name) {
                    Some(v) => out.push_str(&v),
                    None => out.push_str(&rest[start..start + 3 + end]),
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

fn words(c: &Container) -> impl Iterator<Item = &String> {
    c.command.iter().flatten().chain(c.args.iter().flatten())
}

/// The value of `--name` (or `-name`), as `--name=v` or `--name v`, expanded.
pub fn flag(c: &Container, name: &str) -> Option<String> {
    let mut it = words(c).peekable();
    while let Some(word) = it.next() {
        let Some(stripped) = word.strip_prefix("--").or_else(|| word.strip_prefix('-')) else {
            continue;
        };
        if let Some(value) = stripped
            .strip_prefix(name)
            .and_then(|r| r.strip_prefix('='))
        {
            return Some(expand(c, value));
        }
        if stripped == name {
            return it.next().map(|v| expand(c, v));
        }
    }
    None
}

/// The container's `args` with `--name`'s value replaced by `value` (added when absent).
pub fn with_flag(c: &Container, name: &str, value: &str) -> Vec<String> {
    let mut args = c.args.clone().unwrap_or_default();
    let mut i = 0;
    while i < args.len() {
        let stripped = args[i]
            .strip_prefix("--")
            .or_else(|| args[i].strip_prefix('-'))
            .unwrap_or("");
        if stripped
            .strip_prefix(name)
            .is_some_and(|r| r.starts_with('='))
        {
            args[i] = format!("--{name}={value}");
            return args;
        }
        if stripped == name && i + 1 < args.len() {
            args[i + 1] = value.to_owned();
            return args;
        }
        i += 1;
    }
    args.push(format!("--{name}={value}"));
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(args: &[&str]) -> Container {
        Container {
            name: "c".into(),
            args: Some(args.iter().map(|s| s.to_string()).collect()),
            env: Some(vec![k8s_openapi::api::core::v1::EnvVar {
                name: "ADDRESS".into(),
                value: Some("/csi/csi.sock".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn flags_in_both_spellings_with_the_environment_expanded() {
        let c = container(&[
            "--csi-address=$(ADDRESS)",
            "-v",
            "5",
            "--endpoint",
            "unix:///x",
        ]);
        assert_eq!(flag(&c, "csi-address").as_deref(), Some("/csi/csi.sock"));
        assert_eq!(flag(&c, "endpoint").as_deref(), Some("unix:///x"));
        assert_eq!(flag(&c, "v").as_deref(), Some("5"));
        assert_eq!(flag(&c, "missing"), None);
        assert_eq!(
            with_flag(&c, "endpoint", "unix:///y")[4],
            "unix:///y".to_string()
        );
        assert_eq!(with_flag(&c, "csi-address", "/a")[0], "--csi-address=/a");
    }
}
