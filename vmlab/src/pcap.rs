//! Reads what a VM's `capture` recorded (QEMU's `filter-dump`: a classic pcap file of Ethernet
//! frames): the TCP segments over IPv4, enough to say what crossed the lab network.

use std::net::Ipv4Addr;

/// One TCP segment with a payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: Vec<u8>,
}

impl Segment {
    /// Whether `port` is either end's.
    pub fn has_port(&self, port: u16) -> bool {
        self.src_port == port || self.dst_port == port
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    #[error("not a pcap file (magic {0:#x})")]
    Magic(u32),
    #[error("link type {0}, not Ethernet")]
    LinkType(u32),
}

/// The TCP segments with a payload, in capture order. A record cut off at the end (QEMU still
/// writing) ends the list.
pub fn tcp_segments(file: &[u8]) -> Result<Vec<Segment>, PcapError> {
    let u32_at = |at: usize, big: bool| -> Option<u32> {
        let b: [u8; 4] = file.get(at..at + 4)?.try_into().ok()?;
        Some(if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    };
    let magic = u32_at(0, false).unwrap_or(0);
    let big = match magic {
        0xa1b2_c3d4 | 0xa1b2_3c4d => false,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => true,
        other => return Err(PcapError::Magic(other)),
    };
    let link = u32_at(20, big).unwrap_or(0);
    if link != 1 {
        return Err(PcapError::LinkType(link));
    }
    let mut out = Vec::new();
    let mut at = 24;
    while let Some(captured) = u32_at(at + 8, big) {
        let start = at + 16;
        let Some(frame) = file.get(start..start + captured as usize) else {
            break;
        };
        out.extend(segment(frame));
        at = start + captured as usize;
    }
    Ok(out)
}

/// An Ethernet frame's IPv4 TCP segment, if it is one and carries data.
fn segment(frame: &[u8]) -> Option<Segment> {
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = frame.get(14..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if ip.first()? >> 4 != 4 || *ip.get(9)? != 6 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let ip = ip.get(..total.min(ip.len()))?;
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let tcp = ip.get(ihl..)?;
    let offset = usize::from(tcp.get(12)? >> 4) * 4;
    let payload = tcp.get(offset..)?;
    if payload.is_empty() {
        return None;
    }
    Some(Segment {
        src,
        dst,
        src_port: u16::from_be_bytes([tcp[0], tcp[1]]),
        dst_port: u16::from_be_bytes([tcp[2], tcp[3]]),
        payload: payload.to_vec(),
    })
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little-endian pcap file of `frames`.
    fn file(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut f = Vec::new();
        for v in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, 1] {
            f.extend_from_slice(&v.to_le_bytes());
        }
        for frame in frames {
            for v in [0u32, 0, frame.len() as u32, frame.len() as u32] {
                f.extend_from_slice(&v.to_le_bytes());
            }
            f.extend_from_slice(frame);
        }
        f
    }

    fn tcp_frame(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        let total = (20 + 20 + payload.len()) as u16;
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&[0, 0, 0, 0, 64, 6, 0, 0, 10, 99, 0, 2, 10, 99, 0, 1]);
        let mut tcp = Vec::new();
        tcp.extend_from_slice(&sport.to_be_bytes());
        tcp.extend_from_slice(&dport.to_be_bytes());
        tcp.extend_from_slice(&[0; 8]);
        tcp.extend_from_slice(&[0x50, 0x18, 0, 0, 0, 0, 0, 0]);
        f.extend(ip);
        f.extend(tcp);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn tcp_payloads_are_read_with_their_addresses_and_ports() {
        let mut arp = vec![0u8; 12];
        arp.extend_from_slice(&[0x08, 0x06, 0, 1]);
        let empty = tcp_frame(700, 2049, b"");
        let data = tcp_frame(700, 2049, &[0x17, 0x03, 0x03, 0, 5]);
        let mut pcap = file(&[arp, empty, data]);
        let segments = tcp_segments(&pcap).unwrap();
        assert_eq!(
            segments,
            [Segment {
                src: Ipv4Addr::new(10, 99, 0, 2),
                dst: Ipv4Addr::new(10, 99, 0, 1),
                src_port: 700,
                dst_port: 2049,
                payload: vec![0x17, 0x03, 0x03, 0, 5],
            }]
        );
        assert!(segments[0].has_port(2049));
        pcap.truncate(pcap.len() - 2);
        assert!(
            tcp_segments(&pcap).unwrap().is_empty(),
            "a cut record ends it"
        );
        assert!(matches!(tcp_segments(b"nope"), Err(PcapError::Magic(_))));
    }

    #[test]
    fn contains_finds_a_marker_anywhere() {
        assert!(contains(b"..marker..", b"marker"));
        assert!(!contains(b"..mark..", b"marker"));
        assert!(!contains(b"x", b""));
    }
}
