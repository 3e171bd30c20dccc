//! Payloads of hyperdht's record commands (LOOKUP, ANNOUNCE, UNANNOUNCE, MUTABLE_*,
//! IMMUTABLE_*) and the bytes their signatures cover.

use std::net::SocketAddr;

use super::namespaces::{ns, ANNOUNCE, MUTABLE_PUT, UNANNOUNCE};
use crate::crypto::hash::blake2b_256;
use crate::encoding::{DecodeError, EncodeError, Reader, Writer};
use crate::rpc::NodeId;

/// Relay addresses a storing node keeps per announce; the rest are dropped.
pub const MAX_RELAY_ADDRESSES: usize = 3;
/// Records a LOOKUP reply carries at most.
pub const MAX_LOOKUP_RECORDS: usize = 20;

/// A peer as announced under a topic: its public key and where it can be reached through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRecord {
    /// The peer's public key.
    pub public_key: [u8; 32],
    /// DHT nodes that relay handshakes to it (or its own address when it is reachable).
    pub relay_addresses: Vec<SocketAddr>,
}

impl PeerRecord {
    fn write(&self, w: &mut Writer) -> Result<(), EncodeError> {
        w.raw(&self.public_key);
        if self.relay_addresses.iter().any(|a| !a.is_ipv4()) {
            return Err(EncodeError::NotIpv4);
        }
        w.ipv4_array(&self.relay_addresses);
        Ok(())
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(PeerRecord {
            public_key: r.array()?,
            relay_addresses: r.ipv4_array()?,
        })
    }

    /// The record's bytes.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::with_capacity(33 + 6 * self.relay_addresses.len());
        self.write(&mut w)?;
        Ok(w.into_bytes())
    }

    /// Decodes a record.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        Self::read(&mut Reader::new(buf))
    }
}

/// A LOOKUP reply's value: peers under the topic and the topic's bump.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LookupReply {
    /// The peers.
    pub peers: Vec<PeerRecord>,
    /// Highest bump (a millisecond timestamp) announced for the topic; 0 if none.
    pub bump: u64,
}

impl LookupReply {
    /// Encodes from records that are already encoded (as storage keeps them).
    pub fn encode_raw(records: &[&[u8]], bump: u64) -> Vec<u8> {
        let mut w = Writer::with_capacity(10 + records.iter().map(|r| r.len()).sum::<usize>());
        w.uint(records.len() as u64);
        for r in records {
            w.raw(r);
        }
        w.uint(bump);
        w.into_bytes()
    }

    /// Encodes the reply.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::new();
        w.uint(self.peers.len() as u64);
        for p in &self.peers {
            p.write(&mut w)?;
        }
        w.uint(self.bump);
        Ok(w.into_bytes())
    }

    /// Decodes a reply; a missing bump reads as 0.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        let n = r.array_len(33)?;
        let peers = (0..n)
            .map(|_| PeerRecord::read(&mut r))
            .collect::<Result<_, _>>()?;
        let bump = if r.remaining() > 0 { r.uint()? } else { 0 };
        Ok(LookupReply { peers, bump })
    }
}

/// The value of ANNOUNCE and UNANNOUNCE requests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Announce {
    /// The record to store (or remove).
    pub peer: Option<PeerRecord>,
    /// A refresh secret: a later announce presenting its preimage re-adds the record.
    pub refresh: Option<[u8; 32]>,
    /// Signature over [`announce_signable`].
    pub signature: Option<[u8; 64]>,
    /// Millisecond timestamp for the topic's bump; 0 is none. Not signed.
    pub bump: u64,
}

const FLAG_PEER: u64 = 1;
const FLAG_REFRESH: u64 = 2;
const FLAG_SIGNATURE: u64 = 4;
const FLAG_BUMP: u64 = 8;

impl Announce {
    /// Encodes the value.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut flags = 0;
        if self.peer.is_some() {
            flags |= FLAG_PEER;
        }
        if self.refresh.is_some() {
            flags |= FLAG_REFRESH;
        }
        if self.signature.is_some() {
            flags |= FLAG_SIGNATURE;
        }
        if self.bump != 0 {
            flags |= FLAG_BUMP;
        }
        let mut w = Writer::with_capacity(160);
        w.uint(flags);
        if let Some(p) = &self.peer {
            p.write(&mut w)?;
        }
        if let Some(r) = &self.refresh {
            w.raw(r);
        }
        if let Some(s) = &self.signature {
            w.raw(s);
        }
        if self.bump != 0 {
            w.uint(self.bump);
        }
        Ok(w.into_bytes())
    }

    /// Decodes the value.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        let flags = r.uint()?;
        let peer = (flags & FLAG_PEER != 0)
            .then(|| PeerRecord::read(&mut r))
            .transpose()?;
        let refresh = (flags & FLAG_REFRESH != 0).then(|| r.array()).transpose()?;
        let signature = (flags & FLAG_SIGNATURE != 0)
            .then(|| r.array())
            .transpose()?;
        let bump = if flags & FLAG_BUMP != 0 { r.uint()? } else { 0 };
        Ok(Announce {
            peer,
            refresh,
            signature,
            bump,
        })
    }
}

/// What an (un)announce signature covers: the namespace, then a hash binding the topic, the
/// storing node's id and the token it issued, the record and the refresh value.
pub fn announce_signable(
    unannounce: bool,
    target: &NodeId,
    node_id: &NodeId,
    token: &[u8; 32],
    peer: &PeerRecord,
    refresh: Option<&[u8; 32]>,
) -> Result<[u8; 64], EncodeError> {
    let record = peer.encode()?;
    let digest = blake2b_256(&[
        &target.0,
        &node_id.0,
        token,
        &record,
        refresh.map_or(&[][..], |r| &r[..]),
    ]);
    let namespace = ns(if unannounce { UNANNOUNCE } else { ANNOUNCE });
    Ok(concat(&namespace, &digest))
}

/// What a mutable value's signature covers.
pub fn mutable_signable(seq: u64, value: &[u8]) -> [u8; 64] {
    let mut w = Writer::with_capacity(value.len() + 20);
    w.uint(seq).buffer(value);
    concat(&ns(MUTABLE_PUT), &blake2b_256(&[w.as_bytes()]))
}

fn concat(a: &[u8; 32], b: &[u8; 32]) -> [u8; 64] {
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(a);
    out[32..].copy_from_slice(b);
    out
}

/// MUTABLE_PUT's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutablePut {
    /// The signer; the target is hash(public key).
    pub public_key: [u8; 32],
    /// Sequence number; higher replaces lower.
    pub seq: u64,
    /// The value.
    pub value: Vec<u8>,
    /// Signature over [`mutable_signable`].
    pub signature: [u8; 64],
}

impl MutablePut {
    /// Encodes the value.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(self.value.len() + 110);
        w.raw(&self.public_key)
            .uint(self.seq)
            .buffer(&self.value)
            .raw(&self.signature);
        w.into_bytes()
    }

    /// Decodes the value.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        Ok(MutablePut {
            public_key: r.array()?,
            seq: r.uint()?,
            value: r.buffer()?.to_vec(),
            signature: r.array()?,
        })
    }

    /// The stored form, which is also MUTABLE_GET's reply value.
    pub fn stored(&self) -> MutableValue {
        MutableValue {
            seq: self.seq,
            value: self.value.clone(),
            signature: self.signature,
        }
    }
}

/// A signed mutable value as stored and as MUTABLE_GET returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutableValue {
    /// Sequence number.
    pub seq: u64,
    /// The value.
    pub value: Vec<u8>,
    /// Signature over [`mutable_signable`].
    pub signature: [u8; 64],
}

impl MutableValue {
    /// Encodes the value.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(self.value.len() + 80);
        w.uint(self.seq).buffer(&self.value).raw(&self.signature);
        w.into_bytes()
    }

    /// Decodes the value.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        Ok(MutableValue {
            seq: r.uint()?,
            value: r.buffer()?.to_vec(),
            signature: r.array()?,
        })
    }

    /// Whether the signature is `public_key`'s over this seq and value.
    pub fn verify(&self, public_key: &[u8; 32]) -> bool {
        super::keys::verify(
            public_key,
            &mutable_signable(self.seq, &self.value),
            &self.signature,
        )
    }
}

/// A PLUGIN request's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginRequest {
    /// Plugin name.
    pub plugin: String,
    /// Plugin version; must match the registered one.
    pub version: u64,
    /// Command within the plugin.
    pub command: u64,
    /// Payload.
    pub value: Option<Vec<u8>>,
}

impl PluginRequest {
    /// Encodes the value.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.string(&self.plugin)
            .uint(self.version)
            .uint(self.command)
            .uint(u64::from(self.value.is_some()));
        if let Some(v) = &self.value {
            w.buffer(v);
        }
        w.into_bytes()
    }

    /// Decodes the value.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        let plugin = r.string()?.to_string();
        let version = r.uint()?;
        let command = r.uint()?;
        let flags = r.uint()?;
        let value = (flags & 1 != 0)
            .then(|| r.buffer().map(<[u8]>::to_vec))
            .transpose()?;
        Ok(PluginRequest {
            plugin,
            version,
            command,
            value,
        })
    }
}
