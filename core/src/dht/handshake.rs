//! The Noise handshake of a connection, as hyperdht wraps it: message 1 and 2 carry a
//! [`NoisePayload`] describing how to reach each side (addresses, UDX stream id, firewall
//! class). The client writes message 1 once and may send it through several relays; the
//! server answers a repeated message 1 with the same message 2.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::connect_messages::{NoisePayload, SecretStreamInfo, UdxInfo};
use super::namespaces::{ns, PEER_HANDSHAKE};
use crate::crypto::noise::{HandshakeOutcome, NoiseError, NoiseHandshake};

/// Handshake error codes carried in the payload.
pub mod errors {
    /// No error.
    pub const NONE: u64 = 0;
    /// The handshake was refused (for example the client sent no UDX stream).
    pub const ABORTED: u64 = 1;
    /// The payload version is not 1.
    pub const VERSION_MISMATCH: u64 = 2;
    /// The server is busy; try again.
    pub const TRY_LATER: u64 = 3;
}

/// Firewall classes carried in the payload.
pub mod firewall {
    /// Not known.
    pub const UNKNOWN: u64 = 0;
    /// Reachable at its public address.
    pub const OPEN: u64 = 1;
    /// Behind a NAT that keeps ports.
    pub const CONSISTENT: u64 = 2;
    /// Behind a NAT that randomises ports.
    pub const RANDOM: u64 = 3;
}

/// How long a server keeps answering a repeated message 1 with its cached message 2.
pub const HANDSHAKE_CACHE: Duration = Duration::from_secs(10);
/// Handshakes a server remembers at once; older ones are forgotten first.
pub const MAX_CACHED_HANDSHAKES: usize = 1024;

/// The payload a side sends when it offers a fresh UDX stream `udx_id`.
pub fn payload_for(udx_id: u32, firewall: u64, addresses4: Vec<SocketAddr>) -> NoisePayload {
    NoisePayload {
        version: 1,
        error: errors::NONE,
        firewall,
        addresses4,
        udx: Some(UdxInfo {
            version: 1,
            reusable_socket: false,
            id: u64::from(udx_id),
            seq: 0,
        }),
        secret_stream: Some(SecretStreamInfo { version: 1 }),
        ..NoisePayload::default()
    }
}

/// Why a connection handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The Noise layer refused a message.
    #[error(transparent)]
    Noise(#[from] NoiseError),
    /// A payload did not decode.
    #[error("malformed handshake payload")]
    Payload,
    /// The server answered with an error code.
    #[error("server refused the handshake with error {0}")]
    Refused(u64),
}

/// The dialling side.
#[derive(Debug)]
pub struct ClientHandshake {
    noise: NoiseHandshake,
    message1: Vec<u8>,
}

/// A finished handshake: keys and what the other side said about itself.
#[derive(Debug, Clone)]
pub struct Handshaken {
    /// Session keys and hash.
    pub outcome: HandshakeOutcome,
    /// The peer's payload.
    pub remote: NoisePayload,
}

impl ClientHandshake {
    /// Prepares message 1 to `server_public_key` carrying `payload`.
    pub fn new(
        seed: &[u8; 32],
        server_public_key: &[u8; 32],
        payload: &NoisePayload,
    ) -> Result<Self, HandshakeError> {
        let mut noise = NoiseHandshake::initiator(seed, server_public_key, &ns(PEER_HANDSHAKE))?;
        let encoded = payload.encode().map_err(|_| HandshakeError::Payload)?;
        let message1 = noise.write_message(&encoded)?;
        Ok(ClientHandshake { noise, message1 })
    }

    /// Message 1, the same for every relay tried.
    pub fn message1(&self) -> &[u8] {
        &self.message1
    }

    /// Reads the server's message 2.
    pub fn finish(mut self, message2: &[u8]) -> Result<Handshaken, HandshakeError> {
        let bytes = self.noise.read_message(message2)?;
        let remote = NoisePayload::decode(&bytes).map_err(|_| HandshakeError::Payload)?;
        let outcome = self.noise.finish()?;
        if remote.error != errors::NONE {
            return Err(HandshakeError::Refused(remote.error));
        }
        Ok(Handshaken { outcome, remote })
    }
}

/// The listening side's memory of recent handshakes, so a message 1 that arrives through
/// several relays produces one session.
#[derive(Debug, Default)]
pub struct HandshakeCache {
    recent: HashMap<Vec<u8>, (Vec<u8>, Instant)>,
}

impl HandshakeCache {
    /// Answers `message1` for a server with static `seed`. `reply` sees the client's key
    /// and payload and returns our payload, or `None` to refuse silently (no reply at all,
    /// as JS's firewall hook does). Returns message 2 and, for a new handshake (not a
    /// repeat), the session.
    pub fn respond(
        &mut self,
        now: Instant,
        seed: &[u8; 32],
        message1: &[u8],
        reply: impl FnOnce(&[u8; 32], &NoisePayload) -> Option<NoisePayload>,
    ) -> Option<(Vec<u8>, Option<Handshaken>)> {
        self.recent
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < HANDSHAKE_CACHE);
        if let Some((message2, _)) = self.recent.get(message1) {
            return Some((message2.clone(), None));
        }
        let mut noise = NoiseHandshake::responder(seed, &ns(PEER_HANDSHAKE)).ok()?;
        let bytes = noise.read_message(message1).ok()?;
        let remote_key = noise.remote_public_key()?;
        let remote = NoisePayload::decode(&bytes).ok()?;
        let mut ours = reply(&remote_key, &remote)?;
        if remote.version != 1 {
            ours.error = errors::VERSION_MISMATCH;
        } else if remote.udx.is_none() {
            ours.error = errors::ABORTED;
        }
        let message2 = noise.write_message(&ours.encode().ok()?).ok()?;
        let outcome = noise.finish().ok()?;
        if self.recent.len() >= MAX_CACHED_HANDSHAKES {
            let oldest = self
                .recent
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.recent.remove(&k);
            }
        }
        self.recent
            .insert(message1.to_vec(), (message2.clone(), now));
        let session = (ours.error == errors::NONE).then_some(Handshaken { outcome, remote });
        Some((message2, session))
    }
}
