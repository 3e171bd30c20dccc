//! Node ids: BLAKE2b-256 of the node's public `ipv4Address`, and XOR-distance ordering.

use std::cmp::Ordering;
use std::fmt;
use std::net::SocketAddr;

use crate::crypto::hash::blake2b_256;
use crate::encoding::Writer;

/// A 32-byte DHT key: a node id or a lookup target.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct NodeId(pub [u8; 32]);

impl NodeId {
    /// The id a node at `addr` must carry. `None` for addresses dht-rpc cannot encode (IPv6).
    pub fn from_addr(addr: &SocketAddr) -> Option<Self> {
        let mut w = Writer::with_capacity(6);
        w.ipv4_address(addr).ok()?;
        Some(NodeId(blake2b_256(&[w.as_bytes()])))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(NodeId(out))
    }

    /// Orders `a` and `b` by XOR distance to `self`.
    pub fn cmp_distance(&self, a: &NodeId, b: &NodeId) -> Ordering {
        for i in 0..32 {
            if a.0[i] != b.0[i] {
                return (self.0[i] ^ a.0[i]).cmp(&(self.0[i] ^ b.0[i]));
            }
        }
        Ordering::Equal
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({}…)", &self.to_hex()[..12])
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl From<[u8; 32]> for NodeId {
    fn from(b: [u8; 32]) -> Self {
        NodeId(b)
    }
}
