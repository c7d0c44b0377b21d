//! What a run is pointed at and how.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use rwxnfs_server::Endpoint;

#[derive(Clone, Debug)]
pub struct Config {
    /// The node endpoint (and the controller's, unless `controller_endpoint` is set).
    pub endpoint: Endpoint,
    pub controller_endpoint: Option<Endpoint>,
    /// Parent directories under which each spec makes its own staging and target paths.
    pub staging_dir: PathBuf,
    pub target_dir: PathBuf,
    /// CreateVolume parameters (the StorageClass parameters).
    pub parameters: BTreeMap<String, String>,
    pub test_volume_size: i64,
    pub test_volume_expand_size: i64,
    /// Only specs whose name contains one of these run (all when empty).
    pub focus: Vec<String>,
    /// Specs whose name contains one of these are skipped.
    pub skip: Vec<String>,
    /// Upper bound for one spec, calls and clean-up included.
    pub spec_timeout: Duration,
    /// Whether the staging and target directories are on this machine (the runner creates
    /// their parents); false when the node plugin runs elsewhere (a VM), whose paths they are.
    pub local_node: bool,
}

impl Config {
    pub fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            controller_endpoint: None,
            staging_dir: std::env::temp_dir().join("csi-sanity-staging"),
            target_dir: std::env::temp_dir().join("csi-sanity-target"),
            parameters: BTreeMap::new(),
            test_volume_size: 10 * 1024 * 1024 * 1024,
            test_volume_expand_size: 20 * 1024 * 1024 * 1024,
            focus: Vec::new(),
            skip: Vec::new(),
            spec_timeout: Duration::from_secs(120),
            local_node: true,
        }
    }

    pub fn selects(&self, name: &str) -> bool {
        (self.focus.is_empty() || self.focus.iter().any(|f| name.contains(f.as_str())))
            && !self.skip.iter().any(|s| name.contains(s.as_str()))
    }
}

/// Parses a parameters file: a flat YAML mapping of `key: value` lines (comments and blank
/// lines allowed; values may be quoted).
pub fn parse_parameters(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line == "---" {
            continue;
        }
        let (key, value) = line
            .split_once(':')
            .ok_or_else(|| format!("line {}: expected `key: value`, found {line:?}", n + 1))?;
        let unquote = |s: &str| {
            let s = s.trim();
            s.strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .or_else(|| s.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
                .unwrap_or(s)
                .to_owned()
        };
        map.insert(unquote(key), unquote(value));
    }
    Ok(map)
}

/// Parses sizes like 1Gi, 512Mi, 10G, 1048576.
pub fn parse_size(raw: &str) -> Result<i64, String> {
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let n: i64 = number
        .parse()
        .map_err(|_| format!("{raw:?} is not a size like 1Gi"))?;
    let factor: i64 = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "K" | "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        _ => return Err(format!("{raw:?} has an unknown unit {unit:?}")),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("{raw:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1Gi"), Ok(1 << 30));
        assert_eq!(parse_size("10M"), Ok(10_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("1Xi").is_err());
        assert!(parse_size("Gi").is_err());
    }

    #[test]
    fn parameter_files_parse() {
        let map = parse_parameters("# comment\nbackend: ha1\nnfsVersion: \"4.1\"\n\n").unwrap();
        assert_eq!(map["backend"], "ha1");
        assert_eq!(map["nfsVersion"], "4.1");
        assert!(parse_parameters("no colon here").is_err());
    }
}
