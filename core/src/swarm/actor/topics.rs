//! Joined topics: sessions, announce/lookup rounds and their refresh, leaving, listening.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;

use super::{Actor, ConnState, Event, Reply};
use crate::dht::PeerRecord;
use crate::swarm::config::{JoinOptions, SwarmError};
use crate::swarm::discovery::{run_round, ListenState, Refresh, RoundPlan, Topic};
use crate::swarm::network::{Listener, Network, PeerSink, Refuse};

impl<N: Network> Actor<N> {
    pub(super) fn join(
        &mut self,
        topic: [u8; 32],
        options: JoinOptions,
    ) -> Result<(u64, u64), SwarmError> {
        if self.destroyed {
            return Err(SwarmError::Destroyed);
        }
        if !options.server && !options.client {
            return Err(SwarmError::NoMode);
        }
        self.next_id += 1;
        let session = self.next_id;
        if !self.topics.contains_key(&topic) {
            self.next_id += 1;
            let wait = self.leaving.remove(&topic).filter(|w| !*w.borrow());
            self.topics
                .insert(topic, Topic::new(self.next_id, self.suspended, wait));
        }
        let Some(t) = self.topics.get_mut(&topic) else {
            return Err(SwarmError::Destroyed);
        };
        t.sessions.insert(session, (options.server, options.client));
        t.limit = options.limit;
        let gen = t.gen;
        self.refresh_topic(topic, None);
        Ok((gen, session))
    }

    pub(super) fn session_refresh(
        &mut self,
        topic: [u8; 32],
        gen: u64,
        session: u64,
        options: Option<JoinOptions>,
        reply: Reply,
    ) {
        let Some(t) = self
            .topics
            .get_mut(&topic)
            .filter(|t| t.gen == gen && t.sessions.contains_key(&session))
        else {
            let _ = reply.send(Err(SwarmError::SessionDestroyed));
            return;
        };
        if let Some(o) = options {
            if !o.server && !o.client {
                let _ = reply.send(Err(SwarmError::NoMode));
                return;
            }
            t.sessions.insert(session, (o.server, o.client));
            t.limit = o.limit;
        }
        self.refresh_topic(topic, Some(reply));
    }

    pub(super) fn session_destroy(
        &mut self,
        topic: [u8; 32],
        gen: u64,
        session: u64,
        reply: Reply,
    ) {
        let Some(t) = self
            .topics
            .get_mut(&topic)
            .filter(|t| t.gen == gen && t.sessions.contains_key(&session))
        else {
            let _ = reply.send(Ok(true));
            return;
        };
        t.sessions.remove(&session);
        if t.sessions.is_empty() {
            self.leave_topic(topic, Some(reply));
        } else if !t.modes().0 && t.needs_unannounce {
            // The last server left: the next lookup removes our record on the way.
            self.refresh_topic(topic, Some(reply));
        } else {
            let _ = reply.send(Ok(true));
        }
    }

    /// Starts a round for `topic`, or joins the one running when the mode is unchanged.
    pub(super) fn refresh_topic(&mut self, topic: [u8; 32], waiter: Option<Reply>) {
        let destroyed = self.destroyed;
        let Some(t) = self.topics.get_mut(&topic) else {
            if let Some(w) = waiter {
                let _ = w.send(Err(SwarmError::SessionDestroyed));
            }
            return;
        };
        if destroyed || t.suspended {
            if let Some(w) = waiter {
                let _ = w.send(Ok(!destroyed));
            }
            return;
        }
        let (server, client) = t.modes();
        let mut waiters: Vec<Reply> = waiter.into_iter().collect();
        if server == t.is_server && client == t.is_client {
            if let Some(cur) = t.current.as_mut() {
                cur.waiters.append(&mut waiters);
                return;
            }
        } else {
            t.is_server = server;
            t.is_client = client;
            if let Some(mut cur) = t.current.take() {
                // The mode changed: the running round answers the old question.
                cur.task.abort();
                waiters.append(&mut cur.waiters);
            }
        }
        self.start_round(topic, waiters);
    }

    pub(super) fn start_round(&mut self, topic: [u8; 32], waiters: Vec<Reply>) {
        let announcing = self.topics.get(&topic).is_some_and(|t| t.is_server);
        let listening = announcing.then(|| self.ensure_listening());
        let open: HashSet<[u8; 32]> = self
            .all
            .iter()
            .filter(|(_, c)| matches!(c.state, ConnState::Open(_)))
            .map(|(k, _)| *k)
            .collect();
        let Some(t) = self.topics.get_mut(&topic) else {
            return;
        };
        t.refreshes += 1;
        let clock = t.refreshes;
        let clear = announcing && t.first_announce;
        if clear {
            t.first_announce = false;
        }
        if announcing {
            t.needs_unannounce = true;
        }
        // Peers of the last round that we are connected to use up part of the limit.
        let limit_left = match t.limit {
            Some(mut left) if left > 0 => {
                for id in &t.discovered {
                    if open.contains(id) {
                        left -= 1;
                        if left == 0 {
                            break;
                        }
                    }
                }
                Some(left)
            }
            other => other,
        };
        t.discovered.clear();
        let plan = RoundPlan {
            topic,
            key_pair: self.key_pair.clone(),
            announce: listening,
            clear,
            unannounce: !announcing && t.needs_unannounce,
            wait: t.wait.take(),
        };
        let gen = t.gen;
        let ev = self.ev_tx.clone();
        let found_ev = self.ev_tx.clone();
        let found: Arc<PeerSink> = Arc::new(move |peers: Vec<PeerRecord>| {
            let _ = found_ev.send(Event::Found {
                topic,
                gen,
                clock,
                peers,
            });
        });
        let net = self.net.clone();
        let task = tokio::spawn(async move {
            let ok = run_round(net, plan, found).await;
            let _ = ev.send(Event::RoundDone {
                topic,
                gen,
                clock,
                ok,
            });
        });
        t.current = Some(Refresh {
            clock,
            task: task.abort_handle(),
            waiters,
            announcing,
            limit_left,
        });
    }

    pub(super) fn on_found(
        &mut self,
        topic: [u8; 32],
        gen: u64,
        clock: u64,
        peers: Vec<PeerRecord>,
    ) {
        if self.destroyed {
            return;
        }
        let open: HashSet<[u8; 32]> = self
            .all
            .iter()
            .filter(|(_, c)| matches!(c.state, ConnState::Open(_)))
            .map(|(k, _)| *k)
            .collect();
        let Some(t) = self.topics.get_mut(&topic) else {
            return;
        };
        let current = t.current.as_ref().is_some_and(|c| c.clock == clock);
        if t.gen != gen || !current || !t.is_client || t.suspended {
            return;
        }
        let admitted: Vec<PeerRecord> = peers
            .into_iter()
            .filter(|p| t.admit(p.public_key, open.contains(&p.public_key)))
            .collect();
        for p in admitted {
            self.handle_peer(p, topic);
        }
    }

    pub(super) fn on_round_done(&mut self, topic: [u8; 32], gen: u64, clock: u64, ok: bool) {
        let destroyed = self.destroyed;
        let Some(t) = self.topics.get_mut(&topic) else {
            return;
        };
        if t.gen != gen || t.current.as_ref().is_none_or(|c| c.clock != clock) {
            return;
        }
        let Some(cur) = t.current.take() else {
            return;
        };
        if !destroyed && !t.suspended {
            t.refresh_later(Instant::now(), false, &mut self.rng);
        }
        if ok && !cur.announcing {
            t.needs_unannounce = false;
        }
        for w in cur.waiters {
            let _ = w.send(Ok(ok));
        }
    }

    /// Drops a topic: stops its rounds and, if we announced, unannounces in the background.
    /// Returns what signals the unannounce's end, if one runs.
    pub(super) fn leave_topic(
        &mut self,
        topic: [u8; 32],
        reply: Option<Reply>,
    ) -> Option<watch::Receiver<bool>> {
        let mut t = self.topics.remove(&topic)?;
        if let Some(cur) = t.current.take() {
            cur.task.abort();
            for w in cur.waiters {
                let _ = w.send(Ok(false));
            }
        }
        let previous = t.wait.take();
        if !t.needs_unannounce {
            if let Some(p) = previous {
                self.leaving.insert(topic, p);
            }
            if let Some(r) = reply {
                let _ = r.send(Ok(true));
            }
            return None;
        }
        let done = self.unannounce_in_background(topic, previous, reply);
        self.leaving.insert(topic, done.clone());
        Some(done)
    }

    pub(super) fn unannounce_in_background(
        &self,
        topic: [u8; 32],
        previous: Option<watch::Receiver<bool>>,
        reply: Option<Reply>,
    ) -> watch::Receiver<bool> {
        let (done_tx, done_rx) = watch::channel(false);
        let (net, kp) = (self.net.clone(), self.key_pair.clone());
        tokio::spawn(async move {
            if let Some(mut p) = previous {
                let _ = p.wait_for(|d| *d).await;
            }
            // Leaving succeeds even when the network fails us: the record expires anyway.
            let ok = net.unannounce(topic, &kp).await.is_ok();
            done_tx.send_replace(true);
            if let Some(r) = reply {
                let _ = r.send(Ok(ok));
            }
        });
        done_rx
    }

    pub(super) fn ensure_listening(&mut self) -> watch::Receiver<ListenState> {
        if let Some((rx, _)) = &self.listening {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(None);
        let (net, kp, ev) = (self.net.clone(), self.key_pair.clone(), self.ev_tx.clone());
        let refuse = self.gate();
        let task = tokio::spawn(async move {
            match net.listen(&kp, refuse).await {
                Ok(mut listener) => {
                    tx.send_replace(Some(Ok(listener.relay_addresses())));
                    while let Some(stream) = listener.accept().await {
                        if ev.send(Event::Incoming(stream)).is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "listen failed");
                    tx.send_replace(Some(Err(e)));
                    let _ = ev.send(Event::ListenFailed);
                }
            }
        });
        self.listening = Some((rx.clone(), task.abort_handle()));
        rx
    }

    /// The firewall the network consults during handshakes, outside this task.
    pub(super) fn gate(&self) -> Arc<Refuse> {
        let own = self.public_key;
        let banned = self.banned.clone();
        let firewall = self.opts.firewall.clone();
        let ev = self.ev_tx.clone();
        Arc::new(move |key: &[u8; 32]| {
            if *key == own {
                return true;
            }
            let mut set = banned.lock().unwrap_or_else(|e| e.into_inner());
            if set.contains(key) {
                return true;
            }
            if firewall.as_ref().is_some_and(|f| f(key)) {
                set.insert(*key);
                let _ = ev.send(Event::Refused(*key));
                return true;
            }
            false
        })
    }

    pub(super) fn stop_listening(&mut self) {
        if let Some((_, task)) = self.listening.take() {
            task.abort();
        }
    }
}
