//! Blind relays (PROTOCOL.md §9): a hyperdht server that joins two peers' UDX streams
//! without being able to read them, for peers that cannot holepunch (both NATs random).
//!
//! [`HyperDht::serve_relay`] runs the relay; [`pair_through`] is the peers' side: connect to
//! the relay, present the pairing token over the `blind-relay` Protomux channel, and connect
//! the peer stream to the relay-side stream it names. The Noise session of the peer
//! connection is untouched; the relay only forwards UDX packets.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::connection::Connection;
use super::keys::KeyPair;
use super::{DhtError, HyperDht};
use crate::protomux::blind_relay::{self, Pair, PAIR, PROTOCOL, UNPAIR};
use crate::protomux::{self, Mux, MuxEvent};
use crate::udx::{Config, StreamWatch, UdxStream};

/// How long a pairing may take (both sides, JS's relay timeout).
pub const PAIRING_TIMEOUT: Duration = Duration::from_secs(15);
/// Tokens waiting for their other half, per relay; more are refused.
const MAX_PENDING: usize = 4096;
/// Pairings one relay connection may hold open.
const MAX_PAIRINGS_PER_CONNECTION: usize = 64;

type ConnectFuture<'a> = Pin<Box<dyn Future<Output = Result<Connection, DhtError>> + Send + 'a>>;

impl HyperDht {
    /// [`HyperDht::connect`] behind a box, so that connecting can recurse (a relayed
    /// connection first connects to its relay).
    pub(crate) fn connect_boxed<'a>(
        &'a self,
        key_pair: &'a KeyPair,
        server_public_key: &'a [u8; 32],
    ) -> ConnectFuture<'a> {
        Box::pin(self.connect(key_pair, server_public_key))
    }

    /// Runs a blind relay on `key_pair`: peers that name its public key in `relay_through`
    /// are joined through it. Dropping the handle stops it.
    pub async fn serve_relay(&self, key_pair: &KeyPair) -> Result<BlindRelay, DhtError> {
        let mut server = self.listen(key_pair, None).await?;
        let public_key = server.public_key();
        let dht = self.clone();
        let pending: Pending = Arc::default();
        let (paired_tx, paired) = watch::channel(0u64);
        let paired_tx = Arc::new(paired_tx);
        let task = tokio::spawn(async move {
            while let Some(conn) = server.accept().await {
                let session = relay_session(dht.clone(), conn, pending.clone(), paired_tx.clone());
                tokio::spawn(session);
            }
        });
        Ok(BlindRelay {
            public_key,
            task,
            paired,
        })
    }
}

/// A running blind relay.
#[derive(Debug)]
pub struct BlindRelay {
    public_key: [u8; 32],
    task: JoinHandle<()>,
    paired: watch::Receiver<u64>,
}

impl BlindRelay {
    /// The key peers name in `relay_through`.
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    /// Pairings completed so far, as a watch that sees each new one.
    pub fn pairings(&self) -> watch::Receiver<u64> {
        self.paired.clone()
    }
}

impl Drop for BlindRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One half of a pairing, waiting for the other.
struct Half {
    is_initiator: bool,
    stream: StreamWatch,
    /// Frames for the session that presented this half.
    reply: mpsc::Sender<Vec<u8>>,
    channel: u64,
    since: Instant,
}

type Pending = Arc<Mutex<HashMap<[u8; 32], Half>>>;

/// Serves one peer's connection to the relay: the `blind-relay` channel and its pairings.
async fn relay_session(
    dht: HyperDht,
    mut conn: Connection,
    pending: Pending,
    paired: Arc<watch::Sender<u64>>,
) {
    let mut mux = Mux::new();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
    // The relay-side streams of this session's pairings: they live as long as the session.
    let mut streams: Vec<UdxStream> = Vec::new();
    let mut channel = None;
    let mut tokens: Vec<[u8; 32]> = Vec::new();
    loop {
        let frame = tokio::select! {
            m = conn.read_message() => match m {
                Ok(Some(m)) => m,
                other => {
                    tracing::debug!(?other, "relay session: connection ended");
                    break;
                }
            },
            Some(out) = rx.recv() => {
                if conn.write_message(&out).await.is_err() {
                    break;
                }
                continue;
            }
        };
        let Ok(events) = mux.receive(&frame) else {
            tracing::debug!(frame = ?&frame[..frame.len().min(64)], "relay session: protocol error");
            break;
        };
        for event in events {
            match event {
                // JS peers name the channel after their own public key; any id will do.
                MuxEvent::Unclaimed { protocol, id }
                    if protocol == PROTOCOL && channel.is_none() =>
                {
                    let (local, open, _) = mux.open(PROTOCOL, id.as_deref(), &[]);
                    channel = Some(local);
                    if conn.write_message(&open).await.is_err() {
                        return;
                    }
                }
                MuxEvent::Unclaimed { .. } => {}
                MuxEvent::Message {
                    local_id,
                    kind: PAIR,
                    payload,
                } if Some(local_id) == channel => {
                    let Ok(pair) = Pair::decode(&payload) else {
                        continue;
                    };
                    if streams.len() >= MAX_PAIRINGS_PER_CONNECTION {
                        continue;
                    }
                    let stream = dht.node().udx().create_stream(Config::default());
                    // The peer connects its stream to this one from the path of its relay
                    // connection; its first packet tells us where that is.
                    if stream.accept_first(pair.id).is_err() {
                        continue;
                    }
                    let ours = Pair {
                        is_initiator: pair.is_initiator,
                        token: pair.token,
                        id: stream.id(),
                        seq: 0,
                    };
                    let other = take_other_half(&pending, &pair);
                    match other {
                        Some(other) => {
                            let _ = stream.relay_to(&other.stream);
                            let _ = other.stream.relay_to(&stream.watch());
                            let theirs = Pair {
                                is_initiator: other.is_initiator,
                                token: pair.token,
                                id: other.stream.id(),
                                seq: 0,
                            };
                            let _ = other.reply.try_send(protomux::message(
                                other.channel,
                                PAIR,
                                &theirs.encode(),
                            ));
                            paired.send_modify(|n| *n += 1);
                            let answer = protomux::message(local_id, PAIR, &ours.encode());
                            if conn.write_message(&answer).await.is_err() {
                                return;
                            }
                        }
                        None => {
                            let mut p = pending.lock().expect("relay state poisoned");
                            p.retain(|_, h| h.since.elapsed() < PAIRING_TIMEOUT);
                            if p.len() < MAX_PENDING {
                                p.insert(
                                    pair.token,
                                    Half {
                                        is_initiator: pair.is_initiator,
                                        stream: stream.watch(),
                                        reply: tx.clone(),
                                        channel: local_id,
                                        since: Instant::now(),
                                    },
                                );
                                tokens.push(pair.token);
                            }
                        }
                    }
                    streams.push(stream);
                }
                MuxEvent::Message {
                    kind: UNPAIR,
                    payload,
                    ..
                } => {
                    if let Ok(token) = blind_relay::decode_unpair(&payload) {
                        pending.lock().expect("relay state poisoned").remove(&token);
                    }
                }
                _ => {}
            }
        }
    }
    let mut p = pending.lock().expect("relay state poisoned");
    for t in tokens {
        p.remove(&t);
    }
}

/// The waiting half of `pair`'s token, if it is the other role.
fn take_other_half(pending: &Pending, pair: &Pair) -> Option<Half> {
    let mut p = pending.lock().expect("relay state poisoned");
    match p.get(&pair.token) {
        Some(h) if h.is_initiator != pair.is_initiator => p.remove(&pair.token),
        _ => None,
    }
}

/// Pairs `stream` through the relay `relay_public_key` with the other holder of `token`,
/// then connects `stream` to the relay (`peer_stream_id` is the peer's own stream, for a
/// later move to a direct path). Returns the relay connection, which must stay open while
/// the stream is used.
pub(crate) async fn pair_through(
    dht: &HyperDht,
    key_pair: &KeyPair,
    relay_public_key: &[u8; 32],
    token: [u8; 32],
    is_initiator: bool,
    stream: &UdxStream,
    peer_stream_id: u32,
) -> Result<Connection, DhtError> {
    let pairing = async {
        let mut conn = dht.connect_boxed(key_pair, relay_public_key).await?;
        let failed = |_| DhtError::RelayFailed;
        // The peer's packets will come through the relay before our pairing answer does;
        // they must not claim the stream for the wrong id.
        if let Some(addr) = conn.remote_addr() {
            stream
                .accept_except(addr)
                .map_err(|_| DhtError::RelayFailed)?;
        }
        let mut mux = Mux::new();
        // As JS's blind-relay client: the channel id is our key on the relay connection.
        let (local, open, _) = mux.open(PROTOCOL, Some(&key_pair.public_key()), &[]);
        conn.write_message(&open).await.map_err(failed)?;
        let mut sent = false;
        loop {
            let frame = conn
                .read_message()
                .await
                .map_err(failed)?
                .ok_or(DhtError::RelayFailed)?;
            for event in mux.receive(&frame).map_err(|_| DhtError::RelayFailed)? {
                match event {
                    MuxEvent::Opened { local_id, .. } if local_id == local && !sent => {
                        let pair = Pair {
                            is_initiator,
                            token,
                            id: stream.id(),
                            seq: 0,
                        };
                        conn.write_message(&protomux::message(local, PAIR, &pair.encode()))
                            .await
                            .map_err(failed)?;
                        sent = true;
                    }
                    MuxEvent::Message {
                        local_id,
                        kind: PAIR,
                        payload,
                    } if local_id == local => {
                        let Ok(answer) = Pair::decode(&payload) else {
                            continue;
                        };
                        if answer.token != token {
                            continue;
                        }
                        let (Some(socket), Some(addr)) = (conn.socket(), conn.remote_addr()) else {
                            return Err(DhtError::RelayFailed);
                        };
                        // A direct path opened meanwhile (a punch, the peer reaching us): it
                        // wins, as in JS, and the relay is not needed.
                        if stream.socket().is_some() {
                            return Err(DhtError::RelayFailed);
                        }
                        // If the peer finds a direct path after all, its packets arrive
                        // from there and the stream follows.
                        stream
                            .connect_relayed(&socket, answer.id, addr, peer_stream_id)
                            .map_err(|_| DhtError::RelayFailed)?;
                        return Ok(conn);
                    }
                    MuxEvent::Closed { local_id } if local_id == local => {
                        return Err(DhtError::RelayFailed);
                    }
                    _ => {}
                }
            }
        }
    };
    tokio::time::timeout(PAIRING_TIMEOUT, pairing)
        .await
        .unwrap_or(Err(DhtError::RelayFailed))
}
