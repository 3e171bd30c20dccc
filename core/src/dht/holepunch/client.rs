//! The initiator's side of a holepunch (hyperdht's probe round and punch round).

use std::net::SocketAddr;
use std::time::Duration;

use super::puncher::Puncher;
use super::socket::user_request;
use super::{pick_relay, RandomPunchGuard};
use crate::dht::connect::Dialled;
use crate::dht::connect_messages::{
    HandshakeMode, HolepunchMessage, HolepunchPayload, RelayInfo, SecurePayload,
};
use crate::dht::handshake::{errors, firewall};
use crate::dht::{commands, peer_target, DhtError, HyperDht};
use crate::rpc::NodeId;
use crate::udx::StreamWatch;

/// Patience for one relayed PEER_HOLEPUNCH, and its resends.
const HOLEPUNCH_TIMEOUT: Duration = Duration::from_secs(2);
const HOLEPUNCH_RETRIES: u32 = 2;
/// How long the strategies get to make a probe come through (they give up after ~35 s).
const PUNCH_WINDOW: Duration = Duration::from_secs(40);

/// A decrypted answer of the server, with what the relay saw.
struct Answer {
    payload: HolepunchPayload,
    /// Our punch socket's address as the relay saw it.
    to: Option<SocketAddr>,
    /// The server's address as the relay saw it.
    peer_address: Option<SocketAddr>,
}

struct Client<'a> {
    dht: &'a HyperDht,
    target: NodeId,
    id: u64,
    secure: SecurePayload,
    /// Our per-connection secret for address tokens.
    secret: [u8; 32],
    round: u64,
    puncher: Puncher,
}

/// Holepunches to the server of `d` and connects `stream` (to the server's stream
/// `remote_id`) through the path that opened.
pub(crate) async fn holepunch(
    dht: &HyperDht,
    d: &Dialled,
    server_public_key: &[u8; 32],
    stream: &StreamWatch,
    remote_id: u32,
) -> Result<(), DhtError> {
    let remote = d.remote();
    let hp = remote.holepunch.as_ref().ok_or(DhtError::CannotHolepunch)?;
    let server_relay = pick_relay(&hp.relays, d.relay).ok_or(DhtError::CannotHolepunch)?;
    let open = !dht.node().state().firewalled;
    let puncher = Puncher::new(dht.node().udx(), open, remote.firewall, None)
        .map_err(|_| DhtError::HolepunchAborted("cannot open a punch socket"))?;
    let mut c = Client {
        dht,
        target: peer_target(server_public_key),
        id: hp.id,
        secure: SecurePayload::from_handshake_hash(&d.handshake.outcome.hash),
        secret: rand::random(),
        round: 0,
        puncher,
    };
    let nodes = dht.node().closest_in_table(NodeId(rand::random())).await;
    c.puncher.sample(&nodes).await;
    tracing::debug!(
        nodes = nodes.len(),
        firewall = c.puncher.nat.firewall(),
        "sampled"
    );

    let (token, seen_at) = c.probe_round(d.server_address, &server_relay, true).await?;
    // The server may have moved to another socket; through the same relay we learn where,
    // and open our mapping towards that instead.
    let mut server_address = d.server_address;
    if server_relay.relay_address == d.relay {
        if let Some(moved) = seen_at.filter(|a| *a != server_address) {
            server_address = moved;
            c.puncher.probe(server_address, true).await;
        }
    }
    tracing::debug!(
        remote_firewall = c.puncher.remote.firewall,
        "probe round done"
    );
    let _guard = c.punch_round(server_address, d.relay, token).await?;
    tracing::debug!("punching");

    let punched = tokio::time::timeout(PUNCH_WINDOW, async {
        tokio::select! {
            probe = c.puncher.next_probe() => probe.map(Some),
            // The server may reach us first (its stream packet came through a punch
            // socket of ours): then the stream is already connected, or, on a relayed
            // stream, has followed the server there.
            r = stream.direct() => r.ok().map(|_| None),
        }
    })
    .await
    .ok()
    .flatten();
    match punched {
        Some(Some((socket, from))) => {
            tracing::debug!(%from, "probe came through");
            c.puncher.finish(&socket).await;
            stream
                .connect(&socket, remote_id, from)
                .map_err(|_| DhtError::Timeout)
        }
        Some(None) => Ok(()),
        None => Err(DhtError::HolepunchAborted("no probe came through")),
    }
}

impl Client<'_> {
    /// Round one: tell the server our NAT class and learn its, until both are known.
    /// Returns the server's address token for us, if it sent one, and the server's address
    /// as the relay saw it.
    async fn probe_round(
        &mut self,
        server_address: SocketAddr,
        relay: &RelayInfo,
        retry: bool,
    ) -> Result<(Option<[u8; 32]>, Option<SocketAddr>), DhtError> {
        let mut retry = retry;
        loop {
            // Opens our own mapping towards the server before it probes us.
            self.puncher.probe(server_address, true).await;
            let payload = self.payload(false, Some(server_address), None, None);
            let answer = self
                .send(relay.peer_address, relay.relay_address, payload)
                .await?;
            if let Some(to) = answer.to {
                self.puncher.nat.add(to, relay.relay_address);
            }
            if self.puncher.remote.firewall == firewall::UNKNOWN {
                // The server may still be working out its class.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let token = answer.payload.token;
            if (self.puncher.remote.firewall == firewall::UNKNOWN || token.is_none()) && retry {
                retry = false;
                continue;
            }
            if self.puncher.remote.firewall == firewall::UNKNOWN
                || self.puncher.nat.firewall() == firewall::UNKNOWN
            {
                self.abort(relay).await;
                return Err(DhtError::HolepunchAborted("NAT class still unknown"));
            }
            if self.puncher.remote.firewall >= firewall::RANDOM
                && self.puncher.nat.firewall() >= firewall::RANDOM
            {
                self.abort(relay).await;
                return Err(DhtError::HolepunchAborted("both NATs are randomised"));
            }
            return Ok((token, answer.peer_address));
        }
    }

    /// Round two: say we punch (with a token for the server's address, echoing its token
    /// for ours) and start the strategy once the server says it punches too.
    async fn punch_round(
        &mut self,
        server_address: SocketAddr,
        relay: SocketAddr,
        remote_token: Option<[u8; 32]>,
    ) -> Result<Option<RandomPunchGuard>, DhtError> {
        self.puncher.nat.freeze();
        let guard = if self.puncher.is_random() {
            Some(
                self.dht
                    .random_punches()
                    .try_start()
                    .ok_or(DhtError::HolepunchAborted(
                        "a random punch ran too recently",
                    ))?,
            )
        } else {
            None
        };
        let token = SecurePayload::holepunch_token(&self.secret, &server_address.ip());
        let payload = self.payload(true, None, Some(token), remote_token);
        self.send(server_address, relay, payload).await?;
        if !self.puncher.remote.punching {
            return Err(DhtError::HolepunchAborted("the server is not punching"));
        }
        if !self.puncher.punch(true) {
            return Err(DhtError::HolepunchAborted("no strategy fits both NATs"));
        }
        Ok(guard)
    }

    fn payload(
        &mut self,
        punching: bool,
        remote_address: Option<SocketAddr>,
        token: Option<[u8; 32]>,
        remote_token: Option<[u8; 32]>,
    ) -> HolepunchPayload {
        let round = self.round;
        self.round += 1;
        HolepunchPayload {
            error: errors::NONE,
            firewall: self.puncher.nat.firewall(),
            round,
            connected: false,
            punching,
            addresses: self.puncher.nat.addresses(),
            remote_address,
            token,
            remote_token,
        }
    }

    /// Tells the server we give up (it stops its puncher).
    async fn abort(&mut self, relay: &RelayInfo) {
        let mut p = self.payload(false, None, None, None);
        p.error = errors::ABORTED;
        let _ = self.send(relay.peer_address, relay.relay_address, p).await;
    }

    /// One PEER_HOLEPUNCH through `relay` (naming the server's address there), from the
    /// punch socket, and the server's answer.
    async fn send(
        &mut self,
        peer_address: SocketAddr,
        relay: SocketAddr,
        payload: HolepunchPayload,
    ) -> Result<Answer, DhtError> {
        let sealed = self
            .secure
            .seal(&payload)
            .map_err(|_| DhtError::HolepunchAborted("cannot encode the payload"))?;
        let value = HolepunchMessage {
            mode: HandshakeMode::FromClient,
            id: self.id,
            payload: sealed,
            peer_address: Some(peer_address),
        }
        .encode()
        .map_err(|_| DhtError::HolepunchAborted("cannot encode the message"))?;
        let req = user_request(0, relay, commands::PEER_HOLEPUNCH, self.target, value);
        let res = self
            .puncher
            .main()
            .request(req, relay, HOLEPUNCH_TIMEOUT, HOLEPUNCH_RETRIES)
            .await
            .ok_or(DhtError::HolepunchAborted("the server did not answer"))?;
        let msg = res
            .value
            .as_deref()
            .and_then(|v| HolepunchMessage::decode(v).ok())
            .ok_or(DhtError::HolepunchAborted("invalid holepunch reply"))?;
        let payload = self
            .secure
            .open(&msg.payload)
            .ok_or(DhtError::HolepunchAborted(
                "holepunch reply does not decrypt",
            ))?;
        if payload.error == errors::TRY_LATER {
            return Err(DhtError::HolepunchAborted("the server asks to try later"));
        }
        if payload.error != errors::NONE {
            return Err(DhtError::HolepunchAborted("the server aborted"));
        }
        let echoed = payload.remote_token.is_some()
            && payload.remote_token
                == Some(SecurePayload::holepunch_token(
                    &self.secret,
                    &peer_address.ip(),
                ));
        let addresses = payload.addresses.clone().unwrap_or_default();
        self.puncher.remote.update(
            payload.punching,
            payload.firewall,
            &addresses,
            echoed.then(|| peer_address.ip()),
        );
        Ok(Answer {
            payload,
            to: res.to,
            peer_address: msg.peer_address,
        })
    }
}
