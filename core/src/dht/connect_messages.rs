//! Wire formats used while two HyperDHT peers set up a connection.
//!
//! * [`HyperdhtAddress`]: a public key plus optional DHT nodes to ask, the form `connect()`
//!   accepts in place of a bare key.
//! * [`NoisePayload`]: the payload carried encrypted inside both Noise IK handshake messages.
//! * [`HandshakeMessage`]: the value of PEER_HANDSHAKE (command 0) requests and responses.
//! * [`HolepunchMessage`]: the value of PEER_HOLEPUNCH (command 1) requests and responses.
//! * [`HolepunchPayload`]: what a holepunch message carries once decrypted with
//!   [`SecurePayload`].
//!
//! Every decoder works on untrusted bytes: counts are bounded before anything is allocated
//! and malformed input gives a [`DecodeError`]. Trailing bytes after a value are ignored, as
//! the JS decoders ignore them.

use std::net::{IpAddr, SocketAddr};

use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Key, Nonce, XSalsa20Poly1305};

use crate::crypto::hash::{blake2b_256, blake2b_256_keyed};
use crate::encoding::{flag, read_if, DecodeError, EncodeError, Reader, Writer};

/// The only noise payload version this implementation speaks.
pub const NOISE_PAYLOAD_VERSION: u64 = 1;

/// Bytes of the random nonce in front of an encrypted holepunch payload.
pub const NONCE_LEN: usize = 24;

/// Bytes of the Poly1305 tag that follows the nonce in an encrypted holepunch payload.
pub const MAC_LEN: usize = 16;

/// Encoded size of one IPv4 address (4 octets + u16 port).
const IPV4_LEN: usize = 6;
/// Encoded size of one IPv6 address (16 octets + u16 port).
const IPV6_LEN: usize = 18;

// noisePayload flag bits.
const NP_HOLEPUNCH: u64 = 1;
const NP_ADDRESSES4: u64 = 2;
const NP_ADDRESSES6: u64 = 4;
const NP_UDX: u64 = 8;
const NP_SECRET_STREAM: u64 = 16;
const NP_RELAY_THROUGH: u64 = 32;
const NP_RELAY_ADDRESSES: u64 = 64;

// holepunchPayload flag bits.
const HP_CONNECTED: u64 = 1;
const HP_PUNCHING: u64 = 2;
const HP_ADDRESSES: u64 = 4;
const HP_REMOTE_ADDRESS: u64 = 8;
const HP_TOKEN: u64 = 16;
const HP_REMOTE_TOKEN: u64 = 32;

// Wrapper flag bits (PEER_HANDSHAKE and PEER_HOLEPUNCH).
const WRAP_PEER_ADDRESS: u64 = 1;
const WRAP_RELAY_ADDRESS: u64 = 2;

// udx feature bits.
const UDX_REUSABLE_SOCKET: u64 = 1;

// hyperdht-address flag bits.
const ADDR_NODES: u64 = 1;

/// Writes `uint count || count × ipv4Address`, refusing addresses that are not IPv4 (JS would
/// write garbage for them; a silent skip would change the count the caller meant).
fn write_ipv4_array(w: &mut Writer, addrs: &[SocketAddr]) -> Result<(), EncodeError> {
    w.uint(addrs.len() as u64);
    for a in addrs {
        w.ipv4_address(a)?;
    }
    Ok(())
}

/// Writes `uint count || count × ipv6Address`.
fn write_ipv6_array(w: &mut Writer, addrs: &[SocketAddr]) {
    w.uint(addrs.len() as u64);
    for a in addrs {
        w.ipv6_address(a);
    }
}

/// Reads `uint count || count × ipv6Address`, with the count bounded by the bytes left.
fn read_ipv6_array(r: &mut Reader<'_>) -> Result<Vec<SocketAddr>, DecodeError> {
    let n = r.array_len(IPV6_LEN)?;
    (0..n).map(|_| r.ipv6_address()).collect()
}

// ---------------------------------------------------------------------------------------------
// hyperdht-address

/// A server's public key together with DHT nodes that are likely to relay for it
/// (the `hyperdht-address` encoding).
///
/// Wire form: `publicKey(32) || uint flags (bit0 nodes) || [array(ipv4Address) nodes]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HyperdhtAddress {
    /// The server's Ed25519 public key.
    pub public_key: [u8; 32],
    /// DHT nodes to try first. Only IPv4 addresses can be encoded.
    pub nodes: Vec<SocketAddr>,
}

impl HyperdhtAddress {
    /// The encoded bytes. An empty `nodes` list is written as "no nodes" (flag clear), which
    /// decodes to the same value. Fails if a node address is not IPv4.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::with_capacity(34 + self.nodes.len() * IPV4_LEN);
        w.raw(&self.public_key);
        if self.nodes.is_empty() {
            w.uint(0);
        } else {
            w.uint(ADDR_NODES);
            write_ipv4_array(&mut w, &self.nodes)?;
        }
        Ok(w.into_bytes())
    }

    /// Decodes the bytes. A bare 32-byte key (no flags byte) is accepted, as in JS.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        let public_key = r.array()?;
        let flags = if r.remaining() > 0 { r.uint()? } else { 0 };
        let nodes = if flags & ADDR_NODES != 0 {
            r.ipv4_array()?
        } else {
            Vec::new()
        };
        Ok(Self { public_key, nodes })
    }
}

// ---------------------------------------------------------------------------------------------
// noisePayload

/// One relay a server can be holepunched through: the relay node's address and the server's
/// address as that relay sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayInfo {
    /// Address of the DHT node that relays for the server.
    pub relay_address: SocketAddr,
    /// The server's address as observed by that relay.
    pub peer_address: SocketAddr,
}

/// Holepunch details a firewalled server hands the client.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HolepunchInfo {
    /// The server's handshake slot; PEER_HOLEPUNCH messages carry it back.
    pub id: u64,
    /// Relays the client may send PEER_HOLEPUNCH through.
    pub relays: Vec<RelayInfo>,
}

/// The UDX stream one side created for the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdxInfo {
    /// Format version; 1 today.
    pub version: u64,
    /// Whether the sender may reuse the socket for other connections (features bit 0).
    pub reusable_socket: bool,
    /// The sender's local UDX stream id, the remote id for the other side.
    pub id: u64,
    /// Initial sequence number (0 in practice).
    pub seq: u64,
}

impl Default for UdxInfo {
    fn default() -> Self {
        Self {
            version: 1,
            reusable_socket: false,
            id: 0,
            seq: 0,
        }
    }
}

/// Announces SecretStream support.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretStreamInfo {
    /// Format version; 1 today.
    pub version: u64,
}

impl Default for SecretStreamInfo {
    fn default() -> Self {
        Self { version: 1 }
    }
}

/// Asks the other side to route the stream through a blind relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayThrough {
    /// Format version; 1 today.
    pub version: u64,
    /// Reserved flags; JS writes 0 and ignores the value when reading.
    pub flags: u64,
    /// Public key of the blind relay.
    pub public_key: [u8; 32],
    /// Pairing token both sides present to the relay.
    pub token: [u8; 32],
}

/// The payload inside both Noise IK handshake messages (hyperdht `noisePayload`).
///
/// Wire form: `uint version || uint flags || uint error || uint firewall` followed by the
/// optional fields in flag order: holepunch (1), addresses4 (2), addresses6 (4), udx (8),
/// secretStream (16), relayThrough (32), relayAddresses (64).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoisePayload {
    /// Payload version. A decoded payload whose version is not 1 has every other field at
    /// its default, because nothing after the version is parsed.
    pub version: u64,
    /// Handshake error code (0 none, 1 aborted, 2 version mismatch, 3 try later).
    pub error: u64,
    /// The sender's firewall class (0 unknown, 1 open, 2 consistent, 3 random).
    pub firewall: u64,
    /// Holepunch slot and relays (servers without a public address).
    pub holepunch: Option<HolepunchInfo>,
    /// IPv4 addresses the sender can be reached at; written only when non-empty.
    pub addresses4: Vec<SocketAddr>,
    /// IPv6 addresses the sender can be reached at; written only when non-empty. IPv4
    /// entries are written IPv4-mapped and decode as such.
    pub addresses6: Vec<SocketAddr>,
    /// The sender's UDX stream.
    pub udx: Option<UdxInfo>,
    /// SecretStream support.
    pub secret_stream: Option<SecretStreamInfo>,
    /// Blind-relay request.
    pub relay_through: Option<RelayThrough>,
    /// The relays the server announced itself through. `Some(empty)` is kept distinct from
    /// `None` on the wire.
    pub relay_addresses: Option<Vec<SocketAddr>>,
}

impl Default for NoisePayload {
    fn default() -> Self {
        Self {
            version: NOISE_PAYLOAD_VERSION,
            error: 0,
            firewall: 0,
            holepunch: None,
            addresses4: Vec::new(),
            addresses6: Vec::new(),
            udx: None,
            secret_stream: None,
            relay_through: None,
            relay_addresses: None,
        }
    }
}

impl NoisePayload {
    /// The encoded bytes. JS always writes version 1; a payload whose `version` is anything
    /// else is written as that version alone (which is all a reader parses of it). Fails if an
    /// address in an IPv4-only field is not IPv4.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::with_capacity(64);
        w.uint(self.version);
        if self.version != NOISE_PAYLOAD_VERSION {
            return Ok(w.into_bytes());
        }
        let flags = flag(self.holepunch.is_some(), NP_HOLEPUNCH)
            | flag(!self.addresses4.is_empty(), NP_ADDRESSES4)
            | flag(!self.addresses6.is_empty(), NP_ADDRESSES6)
            | flag(self.udx.is_some(), NP_UDX)
            | flag(self.secret_stream.is_some(), NP_SECRET_STREAM)
            | flag(self.relay_through.is_some(), NP_RELAY_THROUGH)
            | flag(self.relay_addresses.is_some(), NP_RELAY_ADDRESSES);
        w.uint(flags).uint(self.error).uint(self.firewall);
        if let Some(h) = &self.holepunch {
            w.uint(h.id).uint(h.relays.len() as u64);
            for relay in &h.relays {
                w.ipv4_address(&relay.relay_address)?;
                w.ipv4_address(&relay.peer_address)?;
            }
        }
        if !self.addresses4.is_empty() {
            write_ipv4_array(&mut w, &self.addresses4)?;
        }
        if !self.addresses6.is_empty() {
            write_ipv6_array(&mut w, &self.addresses6);
        }
        if let Some(u) = &self.udx {
            w.uint(u.version)
                .uint(flag(u.reusable_socket, UDX_REUSABLE_SOCKET))
                .uint(u.id)
                .uint(u.seq);
        }
        if let Some(s) = &self.secret_stream {
            w.uint(s.version);
        }
        if let Some(t) = &self.relay_through {
            w.uint(t.version)
                .uint(t.flags)
                .raw(&t.public_key)
                .raw(&t.token);
        }
        if let Some(addrs) = &self.relay_addresses {
            write_ipv4_array(&mut w, addrs)?;
        }
        Ok(w.into_bytes())
    }

    /// Decodes the bytes.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        let version = r.uint()?;
        if version != NOISE_PAYLOAD_VERSION {
            return Ok(Self {
                version,
                ..Self::default()
            });
        }
        let flags = r.uint()?;
        let error = r.uint()?;
        let firewall = r.uint()?;
        let holepunch = read_if(flags & NP_HOLEPUNCH != 0, || {
            let id = r.uint()?;
            let n = r.array_len(2 * IPV4_LEN)?;
            let relays = (0..n)
                .map(|_| {
                    Ok(RelayInfo {
                        relay_address: r.ipv4_address()?,
                        peer_address: r.ipv4_address()?,
                    })
                })
                .collect::<Result<_, DecodeError>>()?;
            Ok(HolepunchInfo { id, relays })
        })?;
        let addresses4 =
            read_if(flags & NP_ADDRESSES4 != 0, || r.ipv4_array())?.unwrap_or_default();
        let addresses6 =
            read_if(flags & NP_ADDRESSES6 != 0, || read_ipv6_array(&mut r))?.unwrap_or_default();
        let udx = read_if(flags & NP_UDX != 0, || {
            let version = r.uint()?;
            let features = r.uint()?;
            Ok(UdxInfo {
                version,
                reusable_socket: features & UDX_REUSABLE_SOCKET != 0,
                id: r.uint()?,
                seq: r.uint()?,
            })
        })?;
        let secret_stream = read_if(flags & NP_SECRET_STREAM != 0, || {
            Ok(SecretStreamInfo { version: r.uint()? })
        })?;
        let relay_through = read_if(flags & NP_RELAY_THROUGH != 0, || {
            Ok(RelayThrough {
                version: r.uint()?,
                flags: r.uint()?,
                public_key: r.array()?,
                token: r.array()?,
            })
        })?;
        let relay_addresses = read_if(flags & NP_RELAY_ADDRESSES != 0, || r.ipv4_array())?;
        Ok(Self {
            version,
            error,
            firewall,
            holepunch,
            addresses4,
            addresses6,
            udx,
            secret_stream,
            relay_through,
            relay_addresses,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// PEER_HANDSHAKE and PEER_HOLEPUNCH wrappers

/// Which hop a PEER_HANDSHAKE or PEER_HOLEPUNCH message is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeMode {
    /// Client to relay (or straight to the server's node).
    FromClient = 0,
    /// Server back to the relay.
    FromServer = 1,
    /// Relay forwarding the client's message to the server.
    FromRelay = 2,
    /// Second relay forwarding to the server.
    FromSecondRelay = 3,
    /// Final answer to the client, sent as a response.
    Reply = 4,
}

impl HandshakeMode {
    /// The wire number.
    pub fn as_u64(self) -> u64 {
        self as u64
    }

    /// The mode for a wire number, or `None` for one JS would not act on.
    pub fn from_u64(n: u64) -> Option<Self> {
        Some(match n {
            0 => Self::FromClient,
            1 => Self::FromServer,
            2 => Self::FromRelay,
            3 => Self::FromSecondRelay,
            4 => Self::Reply,
            _ => return None,
        })
    }
}

/// The value of a PEER_HANDSHAKE (command 0) request or response.
///
/// Wire form: `uint flags (bit0 peerAddress, bit1 relayAddress) || uint mode || buffer noise
/// || [peerAddress(6)] || [relayAddress(6)]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeMessage {
    /// Which hop this is.
    pub mode: HandshakeMode,
    /// The Noise message (1 from the client, 2 from the server). Empty means absent.
    pub noise: Vec<u8>,
    /// The other peer's address, as seen by the relay that wrote it.
    pub peer_address: Option<SocketAddr>,
    /// A relay to route through (two-relay case).
    pub relay_address: Option<SocketAddr>,
}

impl HandshakeMessage {
    /// The encoded value. Fails if an address is not IPv4.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::with_capacity(self.noise.len() + 20);
        let flags = flag(self.peer_address.is_some(), WRAP_PEER_ADDRESS)
            | flag(self.relay_address.is_some(), WRAP_RELAY_ADDRESS);
        w.uint(flags).uint(self.mode.as_u64()).buffer(&self.noise);
        if let Some(a) = &self.peer_address {
            w.ipv4_address(a)?;
        }
        if let Some(a) = &self.relay_address {
            w.ipv4_address(a)?;
        }
        Ok(w.into_bytes())
    }

    /// Decodes a value. An unknown mode is [`DecodeError::Invalid`]; JS drops such messages.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        let flags = r.uint()?;
        let mode = HandshakeMode::from_u64(r.uint()?).ok_or(DecodeError::Invalid)?;
        let noise = r.buffer()?.to_vec();
        let peer_address = read_if(flags & WRAP_PEER_ADDRESS != 0, || r.ipv4_address())?;
        let relay_address = read_if(flags & WRAP_RELAY_ADDRESS != 0, || r.ipv4_address())?;
        Ok(Self {
            mode,
            noise,
            peer_address,
            relay_address,
        })
    }
}

/// The value of a PEER_HOLEPUNCH (command 1) request or response.
///
/// Wire form: `uint flags (bit0 peerAddress) || uint mode || uint id || buffer payload ||
/// [peerAddress(6)]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolepunchMessage {
    /// Which hop this is (same numbering as PEER_HANDSHAKE).
    pub mode: HandshakeMode,
    /// The server's handshake slot ([`HolepunchInfo::id`]).
    pub id: u64,
    /// The encrypted [`HolepunchPayload`] (see [`SecurePayload`]).
    pub payload: Vec<u8>,
    /// The other peer's address, as seen by the relay that wrote it.
    pub peer_address: Option<SocketAddr>,
}

impl HolepunchMessage {
    /// The encoded value. Fails if the address is not IPv4.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::with_capacity(self.payload.len() + 20);
        w.uint(flag(self.peer_address.is_some(), WRAP_PEER_ADDRESS))
            .uint(self.mode.as_u64())
            .uint(self.id)
            .buffer(&self.payload);
        if let Some(a) = &self.peer_address {
            w.ipv4_address(a)?;
        }
        Ok(w.into_bytes())
    }

    /// Decodes a value. An unknown mode is [`DecodeError::Invalid`]; JS drops such messages.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        let flags = r.uint()?;
        let mode = HandshakeMode::from_u64(r.uint()?).ok_or(DecodeError::Invalid)?;
        let id = r.uint()?;
        let payload = r.buffer()?.to_vec();
        let peer_address = read_if(flags & WRAP_PEER_ADDRESS != 0, || r.ipv4_address())?;
        Ok(Self {
            mode,
            id,
            payload,
            peer_address,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// holepunchPayload

/// The plaintext of a PEER_HOLEPUNCH payload (hyperdht `holepunchPayload`).
///
/// Wire form: `uint flags || uint error || uint firewall || uint round` followed by
/// addresses (flag 4), remoteAddress (8), token (16) and remoteToken (32); flag 1 is
/// `connected` and flag 2 `punching`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HolepunchPayload {
    /// Error code (0 none, 1 aborted, ...).
    pub error: u64,
    /// The sender's firewall class.
    pub firewall: u64,
    /// Probe round counter.
    pub round: u64,
    /// The sender already has a working connection.
    pub connected: bool,
    /// The sender is punching now.
    pub punching: bool,
    /// The sender's own public addresses. `Some(empty)` is kept distinct from `None`.
    pub addresses: Option<Vec<SocketAddr>>,
    /// Where the sender believes the receiver is.
    pub remote_address: Option<SocketAddr>,
    /// Address token for `remote_address`, to be echoed back.
    pub token: Option<[u8; 32]>,
    /// The receiver's token, echoed back.
    pub remote_token: Option<[u8; 32]>,
}

impl HolepunchPayload {
    /// The encoded plaintext. Fails if an address is not IPv4.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::with_capacity(80);
        let flags = flag(self.connected, HP_CONNECTED)
            | flag(self.punching, HP_PUNCHING)
            | flag(self.addresses.is_some(), HP_ADDRESSES)
            | flag(self.remote_address.is_some(), HP_REMOTE_ADDRESS)
            | flag(self.token.is_some(), HP_TOKEN)
            | flag(self.remote_token.is_some(), HP_REMOTE_TOKEN);
        w.uint(flags)
            .uint(self.error)
            .uint(self.firewall)
            .uint(self.round);
        if let Some(addrs) = &self.addresses {
            write_ipv4_array(&mut w, addrs)?;
        }
        if let Some(a) = &self.remote_address {
            w.ipv4_address(a)?;
        }
        if let Some(t) = &self.token {
            w.raw(t);
        }
        if let Some(t) = &self.remote_token {
            w.raw(t);
        }
        Ok(w.into_bytes())
    }

    /// Decodes a plaintext.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        let flags = r.uint()?;
        let error = r.uint()?;
        let firewall = r.uint()?;
        let round = r.uint()?;
        let addresses = read_if(flags & HP_ADDRESSES != 0, || r.ipv4_array())?;
        let remote_address = read_if(flags & HP_REMOTE_ADDRESS != 0, || r.ipv4_address())?;
        let token = read_if(flags & HP_TOKEN != 0, || r.array())?;
        let remote_token = read_if(flags & HP_REMOTE_TOKEN != 0, || r.array())?;
        Ok(Self {
            error,
            firewall,
            round,
            connected: flags & HP_CONNECTED != 0,
            punching: flags & HP_PUNCHING != 0,
            addresses,
            remote_address,
            token,
            remote_token,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Encryption of holepunch payloads

/// `BLAKE2b-256(BLAKE2b-256("hyperswarm/dht") || 0x01)`: the PEER_HOLEPUNCH namespace.
fn ns_peer_holepunch() -> [u8; 32] {
    let base = blake2b_256(&[b"hyperswarm/dht"]);
    blake2b_256(&[&base, &[1]])
}

/// Seals and opens holepunch payloads with the secret both sides derive from the Noise
/// handshake.
///
/// Layout: `nonce(24) || MAC(16) || ciphertext`, i.e. libsodium `crypto_secretbox_easy`
/// (XSalsa20-Poly1305) behind its nonce.
#[derive(Clone)]
pub struct SecurePayload {
    cipher: XSalsa20Poly1305,
}

impl std::fmt::Debug for SecurePayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecurePayload { .. }")
    }
}

impl SecurePayload {
    /// A sealer for the given holepunch secret.
    pub fn new(key: [u8; 32]) -> Self {
        Self {
            cipher: XSalsa20Poly1305::new(Key::from_slice(&key)),
        }
    }

    /// The holepunch secret for a finished Noise handshake:
    /// `BLAKE2b-256(NS_PEER_HOLEPUNCH, key = handshake hash)`.
    pub fn holepunch_secret(handshake_hash: &[u8; 64]) -> [u8; 32] {
        blake2b_256_keyed(handshake_hash, &ns_peer_holepunch())
    }

    /// A sealer keyed with [`Self::holepunch_secret`] of `handshake_hash`.
    pub fn from_handshake_hash(handshake_hash: &[u8; 64]) -> Self {
        Self::new(Self::holepunch_secret(handshake_hash))
    }

    /// Seals `plain` under the given nonce. Never reuse a nonce with the same key; this form
    /// exists for deterministic tests.
    pub fn encrypt_with_nonce(&self, nonce: [u8; NONCE_LEN], plain: &[u8]) -> Vec<u8> {
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plain)
            .expect("XSalsa20-Poly1305 encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Seals `plain` under a fresh random nonce.
    pub fn encrypt(&self, plain: &[u8]) -> Vec<u8> {
        self.encrypt_with_nonce(rand::random(), plain)
    }

    /// Opens a sealed payload; `None` if it is too short or does not authenticate. As in JS, a
    /// box with an empty plaintext (exactly 40 bytes) is refused too.
    pub fn decrypt(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        if bytes.len() <= NONCE_LEN + MAC_LEN {
            return None;
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        self.cipher.decrypt(Nonce::from_slice(nonce), sealed).ok()
    }

    /// Encodes and seals a holepunch payload under a fresh random nonce.
    pub fn seal(&self, payload: &HolepunchPayload) -> Result<Vec<u8>, EncodeError> {
        Ok(self.encrypt(&payload.encode()?))
    }

    /// Opens and decodes a holepunch payload; `None` if either step fails (JS ignores such
    /// messages).
    pub fn open(&self, bytes: &[u8]) -> Option<HolepunchPayload> {
        HolepunchPayload::decode(&self.decrypt(bytes)?).ok()
    }

    /// The address token for `host`: `BLAKE2b-256(utf8(host text), key = secret)`, with the
    /// host in its usual text form (dotted quad, or compressed lowercase IPv6).
    pub fn holepunch_token(secret: &[u8; 32], host: &IpAddr) -> [u8; 32] {
        blake2b_256_keyed(secret, host.to_string().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_payload_with_other_version_keeps_only_the_version() {
        let p = NoisePayload {
            version: 2,
            ..NoisePayload::default()
        };
        let bytes = p.encode().unwrap();
        assert_eq!(bytes, vec![2]);
        assert_eq!(NoisePayload::decode(&[2, 0xff, 0xff]).unwrap(), p);
    }

    #[test]
    fn non_ipv4_address_is_an_encode_error() {
        let m = HandshakeMessage {
            mode: HandshakeMode::FromRelay,
            noise: vec![1],
            peer_address: Some("[2001:db8::1]:1".parse().unwrap()),
            relay_address: None,
        };
        assert_eq!(m.encode(), Err(EncodeError::NotIpv4));
    }

    #[test]
    fn tampered_box_does_not_open() {
        let s = SecurePayload::new([7; 32]);
        let mut sealed = s.encrypt(b"hello");
        assert_eq!(s.decrypt(&sealed).as_deref(), Some(&b"hello"[..]));
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(s.decrypt(&sealed), None);
        assert_eq!(s.decrypt(&[0; 40]), None);
    }
}
