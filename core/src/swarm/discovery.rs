//! Topics: the handle a join returns, what the swarm keeps per joined topic, and one
//! refresh (an announce or a lookup) run as a task.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::actor::{Cmd, Reply};
use super::config::{JoinOptions, SwarmError};
use super::network::{Network, NetworkError, PeerSink};
use crate::dht::KeyPair;

/// Topics are re-announced and looked up again this often...
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(600);
/// ...plus up to this much, so peers of a topic spread their refreshes.
pub const REFRESH_JITTER: Duration = Duration::from_secs(120);
/// A refresh timer this late means the machine slept: refresh soon, not at once.
const DELAY_GRACE_PERIOD: Duration = Duration::from_secs(30);
/// Peers remembered per topic to count a lookup limit against.
const MAX_DISCOVERY_CACHE: usize = 64;

/// The outcome of starting a server: its relay addresses, once known.
pub(crate) type ListenState = Option<Result<Vec<SocketAddr>, NetworkError>>;

/// A joined topic, from [`Swarm::join`](super::Swarm::join). Several joins of one topic
/// share its discovery: it announces while any of them is a server and looks up while any
/// is a client. Dropping the handle keeps the topic joined; [`Discovery::destroy`] leaves
/// this session.
#[derive(Debug)]
pub struct Discovery {
    topic: [u8; 32],
    gen: u64,
    session: u64,
    cmd: mpsc::UnboundedSender<Cmd>,
}

impl Discovery {
    pub(crate) fn new(
        topic: [u8; 32],
        gen: u64,
        session: u64,
        cmd: mpsc::UnboundedSender<Cmd>,
    ) -> Self {
        Discovery {
            topic,
            gen,
            session,
            cmd,
        }
    }

    /// The topic.
    pub fn topic(&self) -> [u8; 32] {
        self.topic
    }

    async fn ask(&self, make: impl FnOnce(Reply) -> Cmd) -> Result<bool, SwarmError> {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(make(tx)).map_err(|_| SwarmError::Destroyed)?;
        rx.await.map_err(|_| SwarmError::Destroyed)?
    }

    /// Waits for the topic's current announce or lookup round; `true` if it succeeded (or
    /// none was running).
    pub async fn flushed(&self) -> bool {
        let (topic, gen) = (self.topic, self.gen);
        self.ask(|reply| Cmd::Flushed { topic, gen, reply })
            .await
            .unwrap_or(false)
    }

    /// Announces and/or looks the topic up again now; `Ok(false)` when that round failed.
    pub async fn refresh(&self) -> Result<bool, SwarmError> {
        self.refresh_inner(None).await
    }

    /// Changes this session's mode and limit, then refreshes as [`Discovery::refresh`].
    pub async fn reconfigure(&self, options: JoinOptions) -> Result<bool, SwarmError> {
        self.refresh_inner(Some(options)).await
    }

    async fn refresh_inner(&self, options: Option<JoinOptions>) -> Result<bool, SwarmError> {
        let (topic, gen, session) = (self.topic, self.gen, self.session);
        self.ask(|reply| Cmd::SessionRefresh {
            topic,
            gen,
            session,
            options,
            reply,
        })
        .await
    }

    /// Ends this session: the topic is left when it was the last one; when it was the last
    /// server, our announcement is removed.
    pub async fn destroy(&self) -> Result<(), SwarmError> {
        let (topic, gen, session) = (self.topic, self.gen, self.session);
        self.ask(|reply| Cmd::SessionDestroy {
            topic,
            gen,
            session,
            reply,
        })
        .await
        .map(drop)
    }
}

/// The round in progress.
pub(crate) struct Refresh {
    pub clock: u64,
    pub task: AbortHandle,
    pub waiters: Vec<Reply>,
    pub announcing: bool,
    pub limit_left: Option<usize>,
}

/// What the swarm keeps per joined topic.
pub(crate) struct Topic {
    pub gen: u64,
    /// Each session's (server, client) mode.
    pub sessions: HashMap<u64, (bool, bool)>,
    pub is_server: bool,
    pub is_client: bool,
    pub limit: Option<usize>,
    pub refreshes: u64,
    pub current: Option<Refresh>,
    /// When the periodic refresh was armed, and its delay.
    pub timer: Option<(Instant, Duration)>,
    pub first_announce: bool,
    pub needs_unannounce: bool,
    pub discovered: HashSet<[u8; 32]>,
    pub suspended: bool,
    /// A previous discovery of this topic still unannouncing; announcing before it finishes
    /// would have our new record removed.
    pub wait: Option<watch::Receiver<bool>>,
}

impl Topic {
    pub fn new(gen: u64, suspended: bool, wait: Option<watch::Receiver<bool>>) -> Self {
        Topic {
            gen,
            sessions: HashMap::new(),
            is_server: false,
            is_client: false,
            limit: None,
            refreshes: 0,
            current: None,
            timer: None,
            first_announce: true,
            needs_unannounce: false,
            discovered: HashSet::new(),
            suspended,
            wait,
        }
    }

    pub fn modes(&self) -> (bool, bool) {
        let server = self.sessions.values().any(|m| m.0);
        let client = self.sessions.values().any(|m| m.1);
        (server, client)
    }

    pub fn refresh_later(&mut self, now: Instant, eager: bool, rng: &mut impl Rng) {
        let jitter = Duration::from_millis(
            (REFRESH_JITTER.as_millis() as f64 * rng.gen::<f64>()).round() as u64,
        );
        let delay = if eager {
            jitter
        } else {
            REFRESH_INTERVAL + jitter
        };
        self.timer = Some((now, delay));
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.timer.map(|(start, delay)| start + delay)
    }

    /// Takes the refresh timer if due; `Some(true)` when it fired so late that the
    /// machine must have slept.
    pub fn take_due_timer(&mut self, now: Instant) -> Option<bool> {
        let (start, delay) = self.timer?;
        if start + delay > now {
            return None;
        }
        self.timer = None;
        Some(now.duration_since(start) > delay + DELAY_GRACE_PERIOD)
    }

    /// Counts a found peer against the round's limit; `false` when over it.
    pub fn admit(&mut self, key: [u8; 32], connected: bool) -> bool {
        let Some(cur) = self.current.as_mut() else {
            return false;
        };
        let Some(left) = cur.limit_left.as_mut() else {
            return true;
        };
        if self.discovered.len() < MAX_DISCOVERY_CACHE {
            self.discovered.insert(key);
        }
        if *left == 0 {
            return false;
        }
        // Going over the limit when a connection appears mid-round is accepted, as in JS.
        if !connected {
            *left -= 1;
        }
        true
    }
}

/// What one round does.
pub(crate) struct RoundPlan {
    pub topic: [u8; 32],
    pub key_pair: KeyPair,
    /// The server's relay addresses to announce, once it listens; `None` for a lookup.
    pub announce: Option<watch::Receiver<ListenState>>,
    pub clear: bool,
    pub unannounce: bool,
    pub wait: Option<watch::Receiver<bool>>,
}

/// Runs one announce or lookup round; `true` if it completed.
pub(crate) async fn run_round<N: Network>(net: N, plan: RoundPlan, found: Arc<PeerSink>) -> bool {
    if let Some(mut w) = plan.wait {
        // An error means that unannounce was dropped, which is as good as done.
        let _ = w.wait_for(|done| *done).await;
    }
    match plan.announce {
        Some(mut listening) => {
            let relays = match listening.wait_for(Option::is_some).await {
                Ok(state) => match state.as_ref() {
                    Some(Ok(relays)) => relays.clone(),
                    _ => return false,
                },
                Err(_) => return false,
            };
            net.announce(plan.topic, &plan.key_pair, relays, plan.clear, found)
                .await
                .is_ok()
        }
        None => {
            let unannounce = plan.unannounce.then_some(&plan.key_pair);
            net.lookup(plan.topic, unannounce, found).await.is_ok()
        }
    }
}
