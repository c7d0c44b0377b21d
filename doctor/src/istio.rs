//! How Istio decides what it captures: injection and ambient enrolment by namespace and pod
//! labels, the annotations that exclude traffic, and the ports it uses itself.

use std::{collections::BTreeSet, net::IpAddr};

use k8s_openapi::api::core::v1::Namespace;

use crate::workload::Workload;

pub const EXCLUDE_OUTBOUND_PORTS: &str = "traffic.sidecar.istio.io/excludeOutboundPorts";
pub const EXCLUDE_OUTBOUND_RANGES: &str = "traffic.sidecar.istio.io/excludeOutboundIPRanges";
pub const EXCLUDE_INBOUND_PORTS: &str = "traffic.sidecar.istio.io/excludeInboundPorts";
pub const PROXY_CONFIG: &str = "proxy.istio.io/config";
pub const INJECT: &str = "sidecar.istio.io/inject";
pub const DATAPLANE_MODE: &str = "istio.io/dataplane-mode";
/// Set by Istio's CNI on a running pod whose traffic ztunnel captures.
pub const AMBIENT_REDIRECTION: &str = "ambient.istio.io/redirection";
pub const REV: &str = "istio.io/rev";
pub const INJECTION: &str = "istio-injection";
/// ztunnel's HBONE port: ambient traffic between pods arrives on it.
pub const HBONE_PORT: u16 = 15008;
/// The mesh's root namespace, where a PeerAuthentication without selector is mesh-wide.
pub const ROOT_NAMESPACE: &str = "istio-system";

fn ns_label<'a>(ns: Option<&'a Namespace>, key: &str) -> Option<&'a str> {
    ns?.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// Whether Istio's injector gives this pod a sidecar: the namespace is labelled for injection
/// (or a revision) or the pod asks for it, and the pod does not opt out. A running pod with an
/// `istio-proxy` container is injected whatever the labels say. Pods on the host network never
/// get one.
pub fn sidecar_injected(ns: Option<&Namespace>, w: &Workload<'_>) -> bool {
    if w.host_network() {
        return false;
    }
    let has_proxy = w
        .spec
        .containers
        .iter()
        .chain(w.spec.init_containers.iter().flatten())
        .any(|c| c.name == "istio-proxy");
    if has_proxy {
        return true;
    }
    let pod_says = w.label(INJECT).or_else(|| w.annotation(INJECT));
    match pod_says {
        Some("false") => false,
        Some("true") => true,
        _ => {
            let injection = ns_label(ns, INJECTION);
            injection == Some("enabled")
                || (injection != Some("disabled") && ns_label(ns, REV).is_some())
                || w.label(REV).is_some()
        }
    }
}

/// Whether ztunnel captures this pod's traffic (ambient mode): the namespace or the pod is
/// enrolled and the pod does not opt out with `istio.io/dataplane-mode: none`. A pod with a
/// sidecar is not captured by ztunnel.
pub fn ambient(ns: Option<&Namespace>, w: &Workload<'_>) -> bool {
    if w.host_network() || sidecar_injected(ns, w) {
        return false;
    }
    if w.annotation(AMBIENT_REDIRECTION) == Some("enabled") {
        return true;
    }
    match w.label(DATAPLANE_MODE) {
        Some("none") => false,
        Some("ambient") => true,
        _ => ns_label(ns, DATAPLANE_MODE) == Some("ambient"),
    }
}

/// The ports of a comma-separated port annotation (`*` stands for every port).
pub fn port_list(raw: Option<&str>) -> (BTreeSet<u16>, bool) {
    let mut ports = BTreeSet::new();
    let mut all = false;
    for item in raw.unwrap_or("").split(',').map(str::trim) {
        if item == "*" {
            all = true;
        } else if let Ok(p) = item.parse() {
            ports.insert(p);
        }
    }
    (ports, all)
}

/// A parsed CIDR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(raw: &str) -> Option<Self> {
        let (addr, prefix) = match raw.trim().split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, p.parse::<u8>().ok()?),
            None => {
                let a = raw.trim().parse::<IpAddr>().ok()?;
                (a, if a.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { addr, prefix })
    }

    /// Whether `self` contains all of `other`.
    pub fn contains(&self, other: &Cidr) -> bool {
        if self.prefix > other.prefix {
            return false;
        }
        let (a, b, bits) = match (self.addr, other.addr) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                (u128::from(u32::from(a)), u128::from(u32::from(b)), 32)
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
            _ => return false,
        };
        let shift = bits - u32::from(self.prefix);
        shift >= 128 || (a >> shift) == (b >> shift)
    }
}

/// The ranges of `needed` that a comma-separated range annotation does not cover.
pub fn uncovered_ranges<'a>(
    raw: Option<&str>,
    needed: impl IntoIterator<Item = &'a String>,
) -> Vec<String> {
    let raw = raw.unwrap_or("");
    if raw.split(',').any(|r| r.trim() == "*") {
        return Vec::new();
    }
    let have: Vec<Cidr> = raw.split(',').filter_map(Cidr::parse).collect();
    needed
        .into_iter()
        .filter(|n| match Cidr::parse(n) {
            Some(n) => !have.iter().any(|h| h.contains(&n)),
            None => true,
        })
        .cloned()
        .collect()
}

/// Joins an existing comma-separated annotation value with what it lacks.
pub fn joined(existing: Option<&str>, add: impl IntoIterator<Item = String>) -> String {
    let mut items: Vec<String> = existing
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    for a in add {
        if !items.contains(&a) {
            items.push(a);
        }
    }
    items.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_addresses_inside_them() {
        let needed = ["192.168.222.25/32".to_string(), "fd00::25/128".to_string()];
        assert!(uncovered_ranges(Some("192.168.0.0/16, fd00::/8"), &needed).is_empty());
        assert_eq!(
            uncovered_ranges(Some("10.0.0.0/8"), &needed),
            needed.to_vec()
        );
        assert!(uncovered_ranges(Some("*"), &needed).is_empty());
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains(&Cidr::parse("1.2.3.4").unwrap())
        );
        assert!(Cidr::parse("10.0.0.0/33").is_none());
    }

    #[test]
    fn annotations_keep_what_they_had() {
        assert_eq!(
            joined(Some("53, 2049"), ["2049".into(), "9820".into()]),
            "53,2049,9820"
        );
        assert_eq!(
            port_list(Some("2049,x,9820")).0,
            BTreeSet::from([2049, 9820])
        );
    }
}
