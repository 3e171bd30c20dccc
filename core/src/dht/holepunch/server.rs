//! The responder's side of a holepunch: a task per handshake that samples its punch
//! socket's NAT, answers the client's PEER_HOLEPUNCH rounds (relayed to us) from that socket,
//! punches when the client does, and echoes every probe that arrives.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::puncher::Puncher;
use super::socket::{user_request, Incoming, PunchSocket};
use super::RandomPunches;
use crate::dht::commands;
use crate::dht::connect_messages::{
    HandshakeMode, HolepunchMessage, HolepunchPayload, SecurePayload,
};
use crate::dht::handshake::{errors, firewall};
use crate::rpc::{NodeId, Request};
use crate::udx::StreamWatch;

/// Holepunch messages queued for one handshake.
const QUEUE: usize = 16;
/// How long a puncher waits for the client to start punching (hyperdht's
/// `HANDSHAKE_INITIAL_TIMEOUT`).
const PREPUNCH: Duration = Duration::from_secs(10);
/// How long a started punch may take before the socket is given up.
const PUNCHING: Duration = Duration::from_secs(45);

/// A PEER_HOLEPUNCH that a relay forwarded to us.
#[derive(Debug)]
pub(crate) struct HolepunchRelayed {
    /// The client's transaction id, kept on the way back.
    pub tid: u16,
    /// The relay that forwarded it (the answer goes back through it).
    pub relay: SocketAddr,
    /// The client's address as the relay saw it.
    pub peer_address: SocketAddr,
    /// The sealed payload.
    pub payload: Vec<u8>,
    /// Whether the relay is one we announced to (only then do we send our token).
    pub from_our_relay: bool,
}

/// What a listening server's holepunches share.
pub(crate) struct ServerPunchSetup {
    /// The node the server listens on.
    pub node: crate::rpc::Node,
    /// hash(server public key): what PEER_HOLEPUNCH messages name.
    pub target: NodeId,
    /// The node's random-punch limit.
    pub random_punches: Arc<RandomPunches>,
    /// Our announce relays: only holepunches through them get our token.
    pub relays: Vec<SocketAddr>,
    /// Whether we punch at all (the application's holepunch hook).
    pub allowed: bool,
}

/// The handler's end of one server-side holepunch.
#[derive(Debug)]
pub(crate) struct ServerPunch {
    tx: mpsc::Sender<HolepunchRelayed>,
    socket: Arc<PunchSocket>,
    task: tokio::task::AbortHandle,
    /// Message 2 of the handshake this punch belongs to: a repeated message 1 gets the
    /// same reply, which must leave from the same socket.
    reply: Vec<u8>,
}

impl Drop for ServerPunch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ServerPunch {
    /// Opens the punch socket and starts the task, which samples the NAT against nodes of
    /// the node's table; `stream` is the server's stream (the task ends once it is
    /// connected).
    pub(crate) fn start(
        setup: ServerPunchSetup,
        handshake_hash: &[u8; 64],
        remote_firewall: u64,
        stream: StreamWatch,
    ) -> std::io::Result<Self> {
        let ServerPunchSetup {
            node,
            target,
            random_punches,
            relays,
            allowed,
        } = setup;
        let udx = node.udx().clone();
        let open = !node.state().firewalled;
        let udx = &udx;
        let (direct_tx, direct) = mpsc::channel(QUEUE);
        let puncher = Puncher::new(udx, open, remote_firewall, Some(direct_tx))?;
        let socket = puncher.main().clone();
        let (tx, rx) = mpsc::channel(QUEUE);
        let session = Session {
            puncher,
            target,
            secure: SecurePayload::from_handshake_hash(handshake_hash),
            secret: rand::random(),
            round: 0,
            random_punches,
            guard: None,
            relays,
            allowed,
        };
        let task = tokio::spawn(session.run(rx, direct, node, stream));
        Ok(ServerPunch {
            tx,
            socket,
            task: task.abort_handle(),
            reply: Vec::new(),
        })
    }

    /// Records message 2, which this punch's socket sends.
    pub(crate) fn set_reply(&mut self, message2: &[u8]) {
        self.reply = message2.to_vec();
    }

    /// Whether `message2` is this punch's reply.
    pub(crate) fn replies_with(&self, message2: &[u8]) -> bool {
        self.reply == message2
    }

    /// A future that resolves when the holepunch task has ended (gave up, or its stream
    /// connected): until then a punch may still open the path.
    pub(crate) fn ended(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let tx = self.tx.clone();
        async move { tx.closed().await }
    }

    /// The socket message 2 goes out from (so the relay tells the client its mapping).
    pub(crate) fn socket(&self) -> &Arc<PunchSocket> {
        &self.socket
    }

    /// Hands a relayed holepunch message to the task; false once the task has ended.
    pub(crate) fn deliver(&self, msg: HolepunchRelayed) -> bool {
        match self.tx.try_send(msg) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Whether the task has ended.
    pub(crate) fn is_done(&self) -> bool {
        self.tx.is_closed()
    }
}

struct Session {
    puncher: Puncher,
    target: NodeId,
    secure: SecurePayload,
    secret: [u8; 32],
    round: u64,
    random_punches: Arc<RandomPunches>,
    guard: Option<super::RandomPunchGuard>,
    /// Our announce relays: only holepunches through them get our token.
    relays: Vec<SocketAddr>,
    allowed: bool,
}

enum Outcome {
    Continue,
    Stop,
}

impl Session {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<HolepunchRelayed>,
        mut direct: mpsc::Receiver<Incoming>,
        node: crate::rpc::Node,
        stream: StreamWatch,
    ) {
        let nodes = node.closest_in_table(NodeId(rand::random())).await;
        drop(node);
        self.puncher.sample(&nodes).await;
        let mut deadline = tokio::time::Instant::now() + PREPUNCH;
        loop {
            tokio::select! {
                msg = rx.recv() => {
                    let Some(msg) = msg else { return };
                    let was_punching = self.puncher.punching;
                    if let Outcome::Stop = self.on_message(msg).await {
                        return;
                    }
                    if self.puncher.punching && !was_punching {
                        deadline = tokio::time::Instant::now() + PUNCHING;
                    }
                }
                Some((req, from)) = direct.recv() => {
                    let Some(msg) = self.relayed(req, from) else { continue };
                    let was_punching = self.puncher.punching;
                    if let Outcome::Stop = self.on_message(msg).await {
                        return;
                    }
                    if self.puncher.punching && !was_punching {
                        deadline = tokio::time::Instant::now() + PUNCHING;
                    }
                }
                probe = self.puncher.next_probe() => {
                    let Some(probe) = probe else { return };
                    // An echo is what completes a punch for the client; none when we will
                    // not punch.
                    if self.allowed {
                        self.puncher.echo(&probe).await;
                    }
                }
                // A relayed stream keeps punching: a direct path still replaces the relay.
                _ = stream.closed_or_direct() => return,
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    }

    /// A PEER_HOLEPUNCH a relay sent straight to the punch socket.
    fn relayed(&self, req: Request, from: SocketAddr) -> Option<HolepunchRelayed> {
        if req.internal
            || req.command != commands::PEER_HOLEPUNCH
            || req.target != Some(self.target)
        {
            return None;
        }
        let hp = HolepunchMessage::decode(req.value.as_deref()?).ok()?;
        if hp.mode != HandshakeMode::FromRelay {
            return None;
        }
        Some(HolepunchRelayed {
            tid: req.tid,
            relay: from,
            peer_address: hp.peer_address?,
            payload: hp.payload,
            from_our_relay: self.relays.contains(&from),
        })
    }

    async fn on_message(&mut self, msg: HolepunchRelayed) -> Outcome {
        // A payload that does not decrypt is not from our client: no answer at all.
        let Some(p) = self.secure.open(&msg.payload) else {
            tracing::debug!("holepunch payload does not decrypt");
            return Outcome::Continue;
        };
        tracing::debug!(
            round = p.round,
            punching = p.punching,
            remote_fw = p.firewall,
            local_fw = self.puncher.nat.firewall(),
            sampled = self.puncher.nat.sampled(),
            "holepunch round"
        );
        if p.error != errors::NONE {
            self.round = self.round.max(p.round);
            self.reply(&msg, abort_payload(self.round, errors::ABORTED));
            return Outcome::Stop;
        }
        let token = SecurePayload::holepunch_token(&self.secret, &msg.peer_address.ip());
        let echoed = msg.from_our_relay && p.remote_token == Some(token);
        if p.round >= self.round {
            self.round = p.round;
            let addresses = p.addresses.clone().unwrap_or_default();
            self.puncher.remote.update(
                p.punching,
                p.firewall,
                &addresses,
                echoed.then(|| msg.peer_address.ip()),
            );
        }
        if !self.puncher.remote.punching && !self.puncher.is_stable() {
            self.reply(&msg, abort_payload(self.round, errors::ABORTED));
            return Outcome::Stop;
        }
        // Fast mode: the client opened its mapping towards an address of ours that we know
        // is stable, so a probe from here reaches it now.
        let consistent = matches!(
            self.puncher.nat.firewall(),
            firewall::CONSISTENT | firewall::OPEN
        );
        // (Not when we will not punch: the client would take the probe for a finished punch.)
        if self.allowed
            && consistent
            && p.remote_address
                .is_some_and(|a| self.puncher.nat.has_address(&a))
        {
            self.puncher.probe(msg.peer_address, false).await;
        }
        if self.puncher.remote.punching && !self.puncher.punching {
            if !self.allowed {
                self.reply(&msg, abort_payload(self.round, errors::ABORTED));
                return Outcome::Stop;
            }
            if self.puncher.is_random() && self.guard.is_none() {
                match self.random_punches.try_start() {
                    Some(g) => self.guard = Some(g),
                    None => {
                        self.reply(&msg, abort_payload(self.round, errors::TRY_LATER));
                        return Outcome::Stop;
                    }
                }
            }
            if !self.puncher.punch(false) {
                self.reply(&msg, abort_payload(self.round, errors::ABORTED));
                return Outcome::Stop;
            }
        }
        if self.puncher.nat.firewall() != firewall::UNKNOWN {
            self.puncher.nat.freeze();
        }
        let reply = HolepunchPayload {
            error: errors::NONE,
            firewall: self.puncher.nat.firewall(),
            round: self.round,
            connected: false,
            punching: self.puncher.punching,
            addresses: self.puncher.nat.addresses(),
            remote_address: None,
            token: msg.from_our_relay.then_some(token),
            remote_token: p.token,
        };
        self.reply(&msg, reply);
        Outcome::Continue
    }

    /// Sends our answer back through the relay, from the punch socket, under the client's
    /// tid (the relay turns it into the response the client waits for).
    fn reply(&self, msg: &HolepunchRelayed, payload: HolepunchPayload) {
        let Ok(sealed) = self.secure.seal(&payload) else {
            return;
        };
        let Ok(value) = (HolepunchMessage {
            mode: HandshakeMode::FromServer,
            id: 0,
            payload: sealed,
            peer_address: Some(msg.peer_address),
        })
        .encode() else {
            return;
        };
        self.puncher.main().send_now(&user_request(
            msg.tid,
            msg.relay,
            commands::PEER_HOLEPUNCH,
            self.target,
            value,
        ));
    }
}

fn abort_payload(round: u64, error: u64) -> HolepunchPayload {
    HolepunchPayload {
        error,
        firewall: firewall::UNKNOWN,
        round,
        connected: false,
        punching: false,
        addresses: None,
        remote_address: None,
        token: None,
        remote_token: None,
    }
}
