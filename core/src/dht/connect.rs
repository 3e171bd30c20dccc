//! Dialling a server's public key up to a finished handshake: find the nodes relaying for
//! it, send message 1 through them, read message 2.

use std::net::SocketAddr;

use super::connect_messages::{HandshakeMessage, HandshakeMode, NoisePayload};
use super::handshake::{firewall, payload_for, ClientHandshake, HandshakeError, Handshaken};
use super::keys::KeyPair;
use super::records::PeerRecord;
use super::{commands, peer_target, DhtError, HyperDht};
use crate::rpc::{QueryOptions, UserRequest};

/// A handshake completed with a server.
#[derive(Debug, Clone)]
pub struct Dialled {
    /// Keys and the server's payload.
    pub handshake: Handshaken,
    /// The relay that carried it.
    pub relay: SocketAddr,
    /// The server's address as the relay saw it (the relay itself when answered directly).
    pub server_address: SocketAddr,
    /// Our address as the relay saw it.
    pub client_address: Option<SocketAddr>,
    /// Whether a relay stood between us.
    pub relayed: bool,
}

impl Dialled {
    /// The server's payload.
    pub fn remote(&self) -> &NoisePayload {
        &self.handshake.remote
    }
}

impl HyperDht {
    /// Performs the handshake with the server listening on `server_public_key`, as
    /// `key_pair`, offering UDX stream `udx_id`.
    pub async fn handshake(
        &self,
        key_pair: &KeyPair,
        server_public_key: &[u8; 32],
        udx_id: u32,
    ) -> Result<Dialled, DhtError> {
        let target = peer_target(server_public_key);
        let seed: [u8; 32] = key_pair.secret_key()[..32]
            .try_into()
            .expect("32-byte seed");
        let payload = payload_for(udx_id, firewall::UNKNOWN, Vec::new());
        let hs = ClientHandshake::new(&seed, server_public_key, &payload)?;
        let message = HandshakeMessage {
            mode: HandshakeMode::FromClient,
            noise: hs.message1().to_vec(),
            peer_address: None,
            relay_address: None,
        }
        .encode()
        .map_err(|_| DhtError::Handshake(HandshakeError::Payload))?;

        let mut relays =
            self.node()
                .query(target, commands::FIND_PEER, None, QueryOptions::default());
        let mut last_error = DhtError::PeerNotFound;
        while let Some(reply) = relays.next().await {
            let record = reply
                .value
                .as_deref()
                .and_then(|v| PeerRecord::decode(v).ok());
            if record.is_none_or(|r| r.public_key != *server_public_key) {
                continue;
            }
            let req = UserRequest {
                command: commands::PEER_HANDSHAKE,
                target: Some(target),
                value: Some(message.clone()),
                ..UserRequest::default()
            };
            let res = match self.node().request(req, reply.from).await {
                Ok(res) => res,
                Err(e) => {
                    last_error = DhtError::Request(e);
                    continue;
                }
            };
            let answer = res
                .value
                .as_deref()
                .and_then(|v| HandshakeMessage::decode(v).ok());
            let Some(answer) = answer.filter(|a| {
                res.from == reply.from && a.mode == HandshakeMode::Reply && !a.noise.is_empty()
            }) else {
                last_error = DhtError::Handshake(HandshakeError::Payload);
                continue;
            };
            // Message 2 answers our one message 1: the handshake state is used up either way.
            let handshake = hs.finish(&answer.noise)?;
            return Ok(Dialled {
                handshake,
                relay: reply.from,
                server_address: answer.peer_address.unwrap_or(reply.from),
                client_address: res.to,
                relayed: answer.peer_address.is_some(),
            });
        }
        Err(last_error)
    }
}
