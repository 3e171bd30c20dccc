//! One side's holepunch state: its punch sockets, its NAT view, what the peer said about
//! itself, and the probing strategies of hyperdht's holepuncher.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinSet;

use super::nat::{coerce, Nat, MIN_SAMPLES};
use super::socket::{Probe, PunchSocket};
use crate::dht::handshake::firewall;
use crate::rpc::{commands, Request};
use crate::udx::{Udx, UdxSocket};

/// Extra sockets a randomised side opens for the birthday punch (hyperdht: 256).
pub(crate) const BIRTHDAY_SOCKETS: usize = 256;
/// Probes sent by the random strategies, one every [`RANDOM_GAP`] (about 35 s).
const RANDOM_TRIES: u32 = 1750;
const RANDOM_GAP: Duration = Duration::from_millis(20);
/// The consistent side's fast phase against a random NAT: [`BURST`] probes every
/// [`BURST_GAP`], [`FAST_BURSTS`] times (5 s, 2000 probes: a miss is ~1 in 3000).
const BURST: usize = 4;
const BURST_GAP: Duration = Duration::from_millis(10);
const FAST_BURSTS: u32 = 500;
/// Rounds of the consistent strategy, one every [`CONSISTENT_GAP`].
const CONSISTENT_TRIES: u32 = 10;
const CONSISTENT_GAP: Duration = Duration::from_secs(1);
/// A NAT sampling ping's patience.
const SAMPLE_TIMEOUT: Duration = Duration::from_millis(1000);
/// Probes queued for the puncher; the first one is all the initiator needs.
const PROBES: usize = 1024;

/// A peer address and whether its token came back (proving it is the peer's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RemoteAddr {
    pub addr: SocketAddr,
    pub verified: bool,
}

/// What the peer last said about itself.
#[derive(Debug, Clone, Default)]
pub(crate) struct Remote {
    pub firewall: u64,
    pub addresses: Vec<RemoteAddr>,
    pub punching: bool,
}

impl Remote {
    /// Takes the peer's new report; `verified` is a host whose token it echoed, and hosts
    /// verified before stay verified.
    pub(crate) fn update(
        &mut self,
        punching: bool,
        fw: u64,
        addresses: &[SocketAddr],
        verified: Option<std::net::IpAddr>,
    ) {
        let was_verified = |ip: std::net::IpAddr| {
            self.addresses
                .iter()
                .any(|a| a.verified && a.addr.ip() == ip)
        };
        let addresses = addresses
            .iter()
            .map(|a| RemoteAddr {
                addr: *a,
                verified: verified == Some(a.ip()) || was_verified(a.ip()),
            })
            .collect();
        self.addresses = addresses;
        self.firewall = fw;
        self.punching = punching;
    }

    fn verified(&self) -> Option<SocketAddr> {
        self.addresses.iter().find(|a| a.verified).map(|a| a.addr)
    }
}

/// The sockets and views of one holepunch.
pub(crate) struct Puncher {
    udx: Udx,
    /// The main socket first; birthday sockets after it.
    sockets: Arc<Mutex<Vec<Arc<PunchSocket>>>>,
    main: Arc<PunchSocket>,
    probes_tx: mpsc::Sender<Probe>,
    probes: mpsc::Receiver<Probe>,
    pub(crate) nat: Nat,
    pub(crate) remote: Remote,
    pub(crate) punching: bool,
    strategies: JoinSet<()>,
}

impl Drop for Puncher {
    fn drop(&mut self) {
        self.strategies.abort_all();
    }
}

impl Puncher {
    /// A puncher with one fresh socket. `open`: the node itself is not firewalled.
    /// `requests` receives dht-rpc requests that arrive on the main socket.
    pub(crate) fn new(
        udx: &Udx,
        open: bool,
        remote_firewall: u64,
        requests: Option<mpsc::Sender<super::socket::Incoming>>,
    ) -> std::io::Result<Self> {
        let (probes_tx, probes) = mpsc::channel(PROBES);
        let main = Arc::new(PunchSocket::open(udx, probes_tx.clone(), requests)?);
        Ok(Puncher {
            udx: udx.clone(),
            sockets: Arc::new(Mutex::new(vec![main.clone()])),
            main,
            probes_tx,
            probes,
            nat: Nat::new(open),
            remote: Remote {
                firewall: remote_firewall,
                ..Remote::default()
            },
            punching: false,
            strategies: JoinSet::new(),
        })
    }

    /// The socket PEER_HOLEPUNCH messages go out from.
    pub(crate) fn main(&self) -> &Arc<PunchSocket> {
        &self.main
    }

    /// Pings up to [`MIN_SAMPLES`] DHT nodes from the main socket and records where they
    /// see it; then tries the rest of `nodes` once if too few answered (as hyperdht).
    pub(crate) async fn sample(&mut self, nodes: &[SocketAddr]) {
        let mut at = 0;
        for _round in 0..2 {
            if self.nat.is_settled() || at >= nodes.len() {
                return;
            }
            let want = MIN_SAMPLES.saturating_sub(self.nat.sampled());
            let batch: Vec<SocketAddr> = nodes[at..].iter().take(want.max(1)).copied().collect();
            at += batch.len();
            let mut pings = JoinSet::new();
            for node in batch {
                let main = self.main.clone();
                pings.spawn(async move {
                    let req = ping_request();
                    (node, main.request(req, node, SAMPLE_TIMEOUT, 0).await)
                });
            }
            while let Some(Ok((node, res))) = pings.join_next().await {
                tracing::debug!(%node, seen = ?res.as_ref().and_then(|r| r.to), "sample");
                if let Some(to) = res.and_then(|r| r.to) {
                    self.nat.add(to, node);
                }
                // As hyperdht's analysis resolves: a verdict does not wait for a node that
                // is slow or gone (that wait was a second on every punch).
                if self.nat.is_settled() {
                    pings.abort_all();
                    return;
                }
            }
        }
    }

    /// Whether the NAT view is good enough to punch with (hyperdht's "stable"): known, and
    /// not random on both sides.
    pub(crate) fn is_stable(&self) -> bool {
        let fw = self.nat.firewall();
        fw != firewall::UNKNOWN
            && !(self.remote.firewall >= firewall::RANDOM && fw >= firewall::RANDOM)
    }

    /// Sends a probe to `addr` from the main socket (`low_ttl`: only open our mapping).
    pub(crate) async fn probe(&self, addr: SocketAddr, low_ttl: bool) {
        self.main.probe(addr, low_ttl).await;
    }

    /// Whether either side is randomised, so the punch counts against the random limit.
    pub(crate) fn is_random(&self) -> bool {
        self.remote.firewall >= firewall::RANDOM || self.nat.firewall() >= firewall::RANDOM
    }

    /// Starts the strategy that fits both NATs in the background. False when none does.
    pub(crate) fn punch(&mut self, initiator: bool) -> bool {
        if self.punching {
            return true;
        }
        if self.remote.addresses.is_empty() {
            return false;
        }
        let local = coerce(self.nat.firewall());
        let remote = coerce(self.remote.firewall);
        let sockets = self.sockets.clone();
        if local == firewall::CONSISTENT && remote == firewall::CONSISTENT {
            let targets = self.remote.addresses.clone();
            let main = self.main.clone();
            self.strategies.spawn(async move {
                // The responder's fast-mode probe already went out; give it a second.
                if !initiator {
                    tokio::time::sleep(CONSISTENT_GAP).await;
                }
                for round in 1..=CONSISTENT_TRIES {
                    for t in &targets {
                        // Unverified addresses only every 4th round.
                        if t.verified || round % 4 == 0 {
                            main.probe(t.addr, false).await;
                        }
                    }
                    tokio::time::sleep(CONSISTENT_GAP).await;
                }
            });
            self.punching = true;
            return true;
        }
        let Some(target) = self.remote.verified() else {
            return false;
        };
        if local == firewall::CONSISTENT && remote >= firewall::RANDOM {
            let main = self.main.clone();
            self.strategies.spawn(async move {
                // The peer's birthday sockets hold ~256 of ~64k ports, so a probe hits one
                // with odds of 1 in 250. hyperdht sends one every 20 ms (median ~3.5 s);
                // a burst every 10 ms finds one in well under a second, and no port is
                // tried twice. After the fast phase, hyperdht's pace for the rest.
                let mut ports: Vec<u16> = (1024..=u16::MAX).collect();
                rand::seq::SliceRandom::shuffle(&mut ports[..], &mut rand::thread_rng());
                let mut ports = ports.into_iter().cycle();
                for _ in 0..FAST_BURSTS {
                    for port in ports.by_ref().take(BURST) {
                        main.probe(SocketAddr::new(target.ip(), port), false).await;
                    }
                    tokio::time::sleep(BURST_GAP).await;
                }
                for port in ports.take(RANDOM_TRIES as usize) {
                    main.probe(SocketAddr::new(target.ip(), port), false).await;
                    tokio::time::sleep(RANDOM_GAP).await;
                }
            });
            self.punching = true;
            return true;
        }
        if local >= firewall::RANDOM && remote == firewall::CONSISTENT {
            let udx = self.udx.clone();
            let probes = self.probes_tx.clone();
            self.strategies.spawn(async move {
                // Birthday: many sockets, each opening a mapping towards the peer with a
                // probe that dies before the peer's NAT, so its NAT does not blacklist us.
                while sockets.lock().await.len() < BIRTHDAY_SOCKETS {
                    let Ok(s) = PunchSocket::open(&udx, probes.clone(), None) else {
                        break;
                    };
                    s.probe(target, true).await;
                    sockets.lock().await.push(Arc::new(s));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                let all: Vec<Arc<PunchSocket>> = sockets.lock().await.clone();
                let mut low_ttl_rounds = 1;
                let mut i = 0;
                for _ in 0..RANDOM_TRIES {
                    if i == all.len() {
                        i = 0;
                        low_ttl_rounds = 0;
                    }
                    all[i].probe(target, low_ttl_rounds > 0).await;
                    i += 1;
                    tokio::time::sleep(RANDOM_GAP).await;
                }
            });
            self.punching = true;
            return true;
        }
        false
    }

    /// The next probe from the peer on any of our punch sockets.
    pub(crate) async fn next_probe(&mut self) -> Option<Probe> {
        self.probes.recv().await
    }

    /// Answers a probe (the responder echoes every one, so the initiator's first arrival
    /// proves the path both ways).
    pub(crate) async fn echo(&self, (socket, from): &Probe) {
        let _ = socket.send_to(&super::socket::PROBE, *from).await;
    }

    /// Keeps `socket` (the winning path) and stops everything else.
    pub(crate) async fn finish(mut self, socket: &UdxSocket) -> Option<Arc<PunchSocket>> {
        self.strategies.abort_all();
        self.punching = false;
        let sockets = self.sockets.lock().await.clone();
        sockets.into_iter().find(|s| s.socket() == socket)
    }
}

/// A dht-rpc PING (internal command); tid and destination are filled in when sent.
fn ping_request() -> Request {
    Request {
        tid: 0,
        to: SocketAddr::from(([0, 0, 0, 0], 0)),
        id: None,
        token: None,
        internal: true,
        command: commands::PING,
        target: None,
        value: None,
    }
}
