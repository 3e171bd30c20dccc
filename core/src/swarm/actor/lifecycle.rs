//! Suspend, resume, destroy, and publishing the counters.

use super::{Actor, ConnState, Reply};
use crate::swarm::network::Network;
use crate::swarm::retry::RetryTimer;

impl<N: Network> Actor<N> {
    pub(super) fn suspend(&mut self, reply: Reply) {
        if self.suspended || self.destroyed {
            let _ = reply.send(Ok(true));
            return;
        }
        self.suspended = true;
        self.stop_listening();
        let mut unannounces = Vec::new();
        for (key, t) in self.topics.iter_mut() {
            t.suspended = true;
            t.timer = None;
            if let Some(cur) = t.current.take() {
                cur.task.abort();
                for w in cur.waiters {
                    let _ = w.send(Ok(false));
                }
            }
            if t.needs_unannounce {
                t.needs_unannounce = false;
                unannounces.push(*key);
            }
        }
        let dones: Vec<_> = unannounces
            .into_iter()
            .map(|topic| self.unannounce_in_background(topic, None, None))
            .collect();
        let keys: Vec<[u8; 32]> = self.all.keys().copied().collect();
        for key in keys {
            self.kill(key);
        }
        self.timer.destroy();
        self.timer = RetryTimer::new(&self.backoffs, &mut self.rng);
        for key in self.queue.drain() {
            if let Some(p) = self.peers.get_mut(&key) {
                p.queued = false;
            }
        }
        tokio::spawn(async move {
            for mut d in dones {
                let _ = d.wait_for(|d| *d).await;
            }
            let _ = reply.send(Ok(true));
        });
    }

    pub(super) fn resume(&mut self) {
        if !self.suspended || self.destroyed {
            return;
        }
        self.suspended = false;
        let keys: Vec<[u8; 32]> = self.topics.keys().copied().collect();
        for key in keys {
            if let Some(t) = self.topics.get_mut(&key) {
                t.suspended = false;
            }
            self.refresh_topic(key, None);
        }
        self.attempt_client_connections();
    }

    pub(super) fn destroy(&mut self, reply: Option<Reply>) {
        if self.destroyed {
            if let Some(r) = reply {
                let _ = r.send(Ok(true));
            }
            return;
        }
        let keys: Vec<[u8; 32]> = self.topics.keys().copied().collect();
        let dones: Vec<_> = keys
            .into_iter()
            .filter_map(|k| self.leave_topic(k, None))
            .collect();
        self.destroyed = true;
        self.timer.destroy();
        self.stop_listening();
        for f in self.pending_flushes.drain(..) {
            let _ = f.reply.send(Ok(false));
        }
        let keys: Vec<[u8; 32]> = self.all.keys().copied().collect();
        for key in keys {
            self.kill(key);
        }
        self.accept_tx = None;
        self.update();
        tokio::spawn(async move {
            for mut d in dones {
                let _ = d.wait_for(|d| *d).await;
            }
            if let Some(r) = reply {
                let _ = r.send(Ok(true));
            }
        });
    }

    pub(super) fn update(&mut self) {
        let s = &mut self.stats;
        s.updates += 1;
        s.connections = self
            .all
            .values()
            .filter(|c| matches!(c.state, ConnState::Open(_)))
            .count();
        s.client_connections = self.client_connections;
        s.server_connections = self.server_connections;
        s.connecting = self.connecting;
        s.queued = self.queue.len();
        s.peers = self.peers.len();
        self.stats_tx.send_replace(*s);
    }
}
