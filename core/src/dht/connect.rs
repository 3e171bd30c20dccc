//! Dialling a server's public key: find the nodes relaying for it, run the Noise handshake
//! through them, pick a path (direct, the server's public address, our own open address,
//! the LAN, or a holepunch) and open the encrypted stream on it.

use std::net::SocketAddr;
use std::time::Duration;

use super::addr::{is_bogon, is_reserved, local_addresses, match_address};
use super::connect_messages::{HandshakeMessage, HandshakeMode, NoisePayload, RelayThrough};
use super::connection::Connection;
use super::handshake::{firewall, payload_for, ClientHandshake, HandshakeError, Handshaken};
use super::holepunch::holepunch;
use super::keys::KeyPair;
use super::records::PeerRecord;
use super::relay::pair_through;
use super::{commands, peer_target, DhtError, HyperDht};
use crate::rpc::{QueryOptions, UserRequest};
use crate::udx::{Config, StreamWatch};

/// How long a side waits for the other to open the stream towards it (hyperdht's
/// `HANDSHAKE_INITIAL_TIMEOUT`).
pub const PASSIVE_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How [`HyperDht::connect_with`] may reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Offer our LAN addresses and take the LAN shortcut when both sides share a public
    /// address (hyperdht's `localConnection`).
    pub local_connection: bool,
    /// Holepunch when no direct path exists (hyperdht's `holepunch` hook returning false
    /// turns it off).
    pub holepunch: bool,
    /// A blind relay to pair through, in parallel with the other paths (hyperdht's
    /// `relayThrough`). The server's choice, if it makes one, wins.
    pub relay_through: Option<[u8; 32]>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            local_connection: true,
            holepunch: true,
            relay_through: None,
        }
    }
}

/// A pairing through a blind relay: its key, the token and whether we lead it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RelayPlan {
    pub public_key: [u8; 32],
    pub token: [u8; 32],
    pub is_initiator: bool,
}

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
    /// Our own address as hyperdht advertises it: known, not firewalled, and on the port of
    /// the server socket (a NAT that keeps ports).
    pub(crate) fn remote_address(&self) -> Option<SocketAddr> {
        let state = self.node().state();
        let (host, port) = state.public_address;
        let host = host?;
        (!state.firewalled && port != 0 && port == self.node().local_addr().port())
            .then(|| SocketAddr::new(host, port))
    }

    /// The payload a client offers: how to reach it and the stream it opened.
    fn client_payload(&self, udx_id: u32, opts: ConnectOptions) -> (NoisePayload, u64) {
        let public = self.remote_address();
        let mut addresses = Vec::new();
        addresses.extend(public);
        if opts.local_connection {
            addresses.extend(local_addresses(self.node().local_addr()));
        }
        let fw = if public.is_some() {
            firewall::OPEN
        } else {
            firewall::UNKNOWN
        };
        (payload_for(udx_id, fw, addresses), fw)
    }

    /// Connects to the server listening on `server_public_key`, as `key_pair`.
    pub async fn connect(
        &self,
        key_pair: &KeyPair,
        server_public_key: &[u8; 32],
    ) -> Result<Connection, DhtError> {
        self.connect_with(key_pair, server_public_key, ConnectOptions::default())
            .await
    }

    /// [`HyperDht::connect`] with options.
    pub async fn connect_with(
        &self,
        key_pair: &KeyPair,
        server_public_key: &[u8; 32],
        opts: ConnectOptions,
    ) -> Result<Connection, DhtError> {
        let stream = self.node().udx().create_stream(Config::default());
        let (mut payload, our_firewall) = self.client_payload(stream.id(), opts);
        let our_token: [u8; 32] = rand::random();
        payload.relay_through = opts.relay_through.map(|public_key| RelayThrough {
            version: 1,
            flags: 0,
            public_key,
            token: our_token,
        });
        let d = self
            .handshake_with(key_pair, server_public_key, &payload)
            .await?;
        tracing::debug!(relay = %d.relay, server = %d.server_address, relayed = d.relayed, "handshake done");
        let remote_id = d
            .remote()
            .udx
            .as_ref()
            .map(|u| u.id as u32)
            .ok_or(DhtError::ServerIncompatible)?;
        let relay = match (d.remote().relay_through, opts.relay_through) {
            (Some(theirs), _) => Some(RelayPlan {
                public_key: theirs.public_key,
                token: theirs.token,
                is_initiator: false,
            }),
            (None, Some(public_key)) => Some(RelayPlan {
                public_key,
                token: our_token,
                is_initiator: true,
            }),
            (None, None) => None,
        };
        let relay_conn = match relay {
            None => {
                self.open_path(
                    &stream.watch(),
                    &d,
                    server_public_key,
                    remote_id,
                    our_firewall,
                    opts,
                )
                .await?;
                None
            }
            Some(plan) => {
                // The direct paths run on their own: when the relay wins, a holepunch that
                // completes later moves the stream off it (hyperdht's upgrade from a relay).
                let direct = tokio::spawn({
                    let (dht, d, watch) = (self.clone(), d.clone(), stream.watch());
                    let server_public_key = *server_public_key;
                    async move {
                        let path = dht.open_path(
                            &watch,
                            &d,
                            &server_public_key,
                            remote_id,
                            our_firewall,
                            opts,
                        );
                        tokio::select! {
                            r = path => r,
                            _ = watch.closed() => Err(DhtError::Timeout),
                        }
                    }
                });
                let direct = async { direct.await.unwrap_or(Err(DhtError::Timeout)) };
                let relay_keys = KeyPair::generate();
                let relayed = pair_through(
                    self,
                    &relay_keys,
                    &plan.public_key,
                    plan.token,
                    plan.is_initiator,
                    &stream,
                    remote_id,
                );
                race_relay(direct, relayed).await?
            }
        };
        let mut conn = Connection::new(stream, d.handshake.outcome, key_pair.public_key());
        if let Some(relay_conn) = relay_conn {
            conn.keep_relay(relay_conn);
        }
        match tokio::time::timeout(PASSIVE_CONNECT_TIMEOUT, conn.opened()).await {
            Ok(Ok(())) => Ok(conn),
            _ => Err(DhtError::Timeout),
        }
    }

    /// Connects the raw stream along the first path that works, as hyperdht's client does.
    async fn open_path(
        &self,
        stream: &StreamWatch,
        d: &Dialled,
        server_public_key: &[u8; 32],
        remote_id: u32,
        our_firewall: u64,
        opts: ConnectOptions,
    ) -> Result<(), DhtError> {
        // A stream packet from the server may already have arrived (it connects to open
        // clients straight away): then that is the path.
        stream
            .accept_first(remote_id)
            .map_err(|_| DhtError::Timeout)?;
        if stream.socket().is_some() && !stream.is_relayed() {
            return Ok(());
        }
        let remote = d.remote();
        let socket = self.node().socket().clone();
        let holepunch_relays = remote
            .holepunch
            .as_ref()
            .is_some_and(|h| !h.relays.is_empty());
        if !d.relayed {
            return stream
                .connect(&socket, remote_id, d.relay)
                .map_err(|_| DhtError::Timeout);
        }
        if remote.firewall == firewall::OPEN || !holepunch_relays {
            let addr = remote
                .addresses4
                .iter()
                .find(|a| !is_bogon(&a.ip()))
                .copied()
                .unwrap_or(d.server_address);
            return stream
                .connect(&socket, remote_id, addr)
                .map_err(|_| DhtError::Timeout);
        }
        if our_firewall == firewall::OPEN {
            return wait_connected(stream).await;
        }
        let same_host = d.client_address.map(|c| c.ip()) == Some(d.server_address.ip());
        if opts.local_connection && same_host {
            // Behind the same public address: the LAN is the short way round.
            if let Some(addr) = self.lan_address(remote).await {
                let server_socket = self.node().server_socket().clone();
                return stream
                    .connect(&server_socket, remote_id, addr)
                    .map_err(|_| DhtError::Timeout);
            }
        }
        if !opts.holepunch {
            return Err(DhtError::HolepunchAborted("holepunching is off"));
        }
        holepunch(self, d, server_public_key, stream, remote_id).await
    }

    /// The server's LAN address that shares most with ours, if it answers a ping.
    async fn lan_address(&self, remote: &NoisePayload) -> Option<SocketAddr> {
        let theirs: Vec<SocketAddr> = remote
            .addresses4
            .iter()
            .filter(|a| !is_reserved(&a.ip()))
            .copied()
            .collect();
        let first = *theirs.first()?;
        let ours = local_addresses(self.node().local_addr());
        let addr = match_address(&ours, &theirs).unwrap_or(first);
        self.node().ping(addr).await.ok().map(|_| addr)
    }

    /// Runs the handshake with the server on `server_public_key`, offering `payload`.
    pub async fn handshake_with(
        &self,
        key_pair: &KeyPair,
        server_public_key: &[u8; 32],
        payload: &NoisePayload,
    ) -> Result<Dialled, DhtError> {
        let target = peer_target(server_public_key);
        let seed: [u8; 32] = key_pair.secret_key()[..32]
            .try_into()
            .expect("32-byte seed");
        let hs = ClientHandshake::new(&seed, server_public_key, payload)?;
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
        let mut attempted = false;
        while let Some(reply) = relays.next().await {
            let record = reply
                .value
                .as_deref()
                .and_then(|v| PeerRecord::decode(v).ok());
            if record.is_none_or(|r| r.public_key != *server_public_key) {
                continue;
            }
            attempted = true;
            tracing::debug!(relay = %reply.from, "sending message 1");
            let req = UserRequest {
                command: commands::PEER_HANDSHAKE,
                target: Some(target),
                value: Some(message.clone()),
                ..UserRequest::default()
            };
            let Ok(res) = self.node().request(req, reply.from).await else {
                continue;
            };
            let answer = res
                .value
                .as_deref()
                .and_then(|v| HandshakeMessage::decode(v).ok());
            let Some(answer) = answer.filter(|a| {
                res.from == reply.from && a.mode == HandshakeMode::Reply && !a.noise.is_empty()
            }) else {
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
        Err(if attempted {
            DhtError::PeerConnectionFailed
        } else {
            DhtError::PeerNotFound
        })
    }
}

/// Runs the direct paths and the relay pairing side by side: the first to connect the
/// stream wins, and a failure of one leaves the other to finish. Returns the relay
/// connection when the relay won (it must stay open while the stream is used).
pub(crate) async fn race_relay(
    direct: impl std::future::Future<Output = Result<(), DhtError>>,
    relayed: impl std::future::Future<Output = Result<Connection, DhtError>>,
) -> Result<Option<Connection>, DhtError> {
    tokio::pin!(direct);
    tokio::pin!(relayed);
    // The relay side first: when the pairing connects the stream, a direct side that only
    // waits for the stream to get a path becomes ready in the same turn, and must not win
    // (dropping the relay connection would tear the relayed path down).
    tokio::select! {
        biased;
        r = &mut relayed => match r {
            Ok(conn) => Ok(Some(conn)),
            Err(e) => direct.await.map(|()| None).map_err(|_| e),
        },
        r = &mut direct => match r {
            Ok(()) => Ok(None),
            Err(_) => relayed.await.map(Some),
        },
    }
}

/// Waits for the other side to open the stream towards us.
pub(crate) async fn wait_connected(stream: &StreamWatch) -> Result<(), DhtError> {
    match tokio::time::timeout(PASSIVE_CONNECT_TIMEOUT, stream.direct()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(_)) | Err(_) => Err(DhtError::Timeout),
    }
}
