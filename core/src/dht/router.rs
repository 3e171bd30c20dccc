//! Relaying of PEER_HANDSHAKE and PEER_HOLEPUNCH for servers that announced themselves to
//! this node. Every hop keeps the client's transaction id; the last hop answers the client
//! with a response. This node only forwards: it never reads the Noise or holepunch payloads.

use std::net::SocketAddr;
use std::time::Instant;

use super::connect_messages::{HandshakeMessage, HandshakeMode, HolepunchMessage};
use super::holepunch::user_request;
use super::server::LocalServer;
use super::storage::Stores;
use crate::rpc::{IncomingRequest, ReplyOptions, Responder};

/// Answers to the client carry neither token nor closer nodes.
const TO_CLIENT: ReplyOptions = ReplyOptions {
    token: false,
    closer_nodes: false,
    to: None,
};

fn relay_of(stores: &mut Stores, now: Instant, req: &IncomingRequest) -> Option<SocketAddr> {
    let target = req.target?;
    stores.forward(now, &target).map(|f| f.relay)
}

/// PEER_HANDSHAKE as a relay (the server side lives with the server).
pub(crate) fn on_peer_handshake(
    stores: &mut Stores,
    now: Instant,
    req: &IncomingRequest,
    out: &mut Responder<'_>,
) {
    let Some(hs) = req
        .value
        .as_deref()
        .and_then(|v| HandshakeMessage::decode(v).ok())
    else {
        return;
    };
    if hs.noise.is_empty() {
        return;
    }
    if let Some(server) = req.target.and_then(|t| stores.servers.get_mut(&t.0)) {
        answer_as_server(server, now, req, hs, out);
        return;
    }
    let relay = relay_of(stores, now, req);
    match hs.mode {
        HandshakeMode::FromClient => {
            let Some(next) = hs.relay_address.or(relay) else {
                // Not relaying for this key: an empty answer with closer nodes.
                let opts = ReplyOptions {
                    token: false,
                    closer_nodes: true,
                    to: None,
                };
                out.reply(req, None, opts);
                return;
            };
            let fwd = HandshakeMessage {
                mode: HandshakeMode::FromRelay,
                noise: hs.noise,
                peer_address: Some(req.from),
                relay_address: None,
            };
            if let Ok(v) = fwd.encode() {
                out.relay(req, Some(&v), next);
            }
        }
        HandshakeMode::FromRelay => {
            let Some(relay) = relay else {
                return;
            };
            let fwd = HandshakeMessage {
                mode: HandshakeMode::FromSecondRelay,
                noise: hs.noise,
                peer_address: hs.peer_address,
                relay_address: Some(req.from),
            };
            if let Ok(v) = fwd.encode() {
                out.relay(req, Some(&v), relay);
            }
        }
        HandshakeMode::FromServer => {
            let Some(client) = hs.peer_address else {
                return;
            };
            let reply = HandshakeMessage {
                mode: HandshakeMode::Reply,
                noise: hs.noise,
                peer_address: Some(req.from),
                relay_address: None,
            };
            if let Ok(v) = reply.encode() {
                out.reply(
                    req,
                    Some(&v),
                    ReplyOptions {
                        to: Some(client),
                        ..TO_CLIENT
                    },
                );
            }
        }
        HandshakeMode::FromSecondRelay | HandshakeMode::Reply => {}
    }
}

/// PEER_HANDSHAKE for a server listening on this node: answered directly, or back through
/// the relay that forwarded it.
fn answer_as_server(
    server: &mut LocalServer,
    now: Instant,
    req: &IncomingRequest,
    hs: HandshakeMessage,
    out: &mut Responder<'_>,
) {
    let client = match hs.mode {
        HandshakeMode::FromClient => req.from,
        HandshakeMode::FromRelay | HandshakeMode::FromSecondRelay => match hs.peer_address {
            Some(a) => a,
            None => return,
        },
        HandshakeMode::FromServer | HandshakeMode::Reply => return,
    };
    let direct = hs.mode == HandshakeMode::FromClient;
    let Some((message2, punch_socket)) = server.respond(now, &hs.noise, client, direct) else {
        return;
    };
    tracing::debug!(%client, relay = %req.from, punch_socket = punch_socket.is_some(), "message 1 answered");
    let (next, answer) = match hs.mode {
        HandshakeMode::FromClient => {
            let reply = HandshakeMessage {
                mode: HandshakeMode::Reply,
                noise: message2,
                peer_address: None,
                relay_address: None,
            };
            if let Ok(v) = reply.encode() {
                out.reply(req, Some(&v), TO_CLIENT);
            }
            return;
        }
        HandshakeMode::FromRelay => (req.from, hs.peer_address),
        _ => match hs.relay_address {
            Some(r) => (r, hs.peer_address),
            None => return,
        },
    };
    let back = HandshakeMessage {
        mode: HandshakeMode::FromServer,
        noise: message2,
        peer_address: answer,
        relay_address: None,
    };
    let Ok(v) = back.encode() else { return };
    match punch_socket {
        // Sent from the punch socket, the relay reports that socket's mapping to the client.
        Some(socket) => {
            if let Some(target) = req.target {
                socket.send_now(&user_request(req.tid, next, req.command, target, v));
            }
        }
        None => out.relay(req, Some(&v), next),
    }
}

/// PEER_HOLEPUNCH as a relay: stateless when the sender names the next hop.
pub(crate) fn on_peer_holepunch(
    stores: &mut Stores,
    now: Instant,
    req: &IncomingRequest,
    out: &mut Responder<'_>,
) {
    let Some(hp) = req
        .value
        .as_deref()
        .and_then(|v| HolepunchMessage::decode(v).ok())
    else {
        return;
    };
    if hp.mode == HandshakeMode::FromRelay {
        let server = req.target.and_then(|t| stores.servers.get_mut(&t.0));
        if let (Some(server), Some(peer)) = (server, hp.peer_address) {
            server.on_holepunch(hp.id, req.tid, req.from, peer, hp.payload);
        }
        return;
    }
    match hp.mode {
        HandshakeMode::FromClient => {
            let Some(next) = hp.peer_address.or_else(|| relay_of(stores, now, req)) else {
                return;
            };
            let fwd = HolepunchMessage {
                mode: HandshakeMode::FromRelay,
                id: hp.id,
                payload: hp.payload,
                peer_address: Some(req.from),
            };
            if let Ok(v) = fwd.encode() {
                out.relay(req, Some(&v), next);
            }
        }
        HandshakeMode::FromServer => {
            let Some(client) = hp.peer_address else {
                return;
            };
            let reply = HolepunchMessage {
                mode: HandshakeMode::Reply,
                id: hp.id,
                payload: hp.payload,
                peer_address: Some(req.from),
            };
            if let Ok(v) = reply.encode() {
                out.reply(
                    req,
                    Some(&v),
                    ReplyOptions {
                        to: Some(client),
                        ..TO_CLIENT
                    },
                );
            }
        }
        HandshakeMode::FromRelay | HandshakeMode::FromSecondRelay | HandshakeMode::Reply => {}
    }
}
