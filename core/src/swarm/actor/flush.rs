//! Flushes: waiting until every peer queued so far has had its try.

use super::{Actor, ConnState, PendingFlush, Reply};
use crate::swarm::network::Network;

impl<N: Network> Actor<N> {
    pub(super) fn flush_maybe(&mut self, key: [u8; 32]) {
        if let Some(tick) = self.peers.get(&key).map(|p| p.flush_tick) {
            self.flush_tick_done(tick);
        }
    }

    /// A peer queued at `tick` has had its try.
    pub(super) fn flush_tick_done(&mut self, tick: u64) {
        let mut i = 0;
        while i < self.pending_flushes.len() {
            let f = &mut self.pending_flushes[i];
            if tick > f.tick {
                i += 1;
                continue;
            }
            f.missing = f.missing.saturating_sub(1);
            if f.missing > 0 {
                i += 1;
                continue;
            }
            let f = self.pending_flushes.remove(i);
            self.flushed.push((f.reply, true));
        }
    }

    pub(super) fn flush_all_maybe(&mut self) -> bool {
        let room =
            self.within_max_peers() && self.client_connections < self.opts.max_client_connections;
        if self.connecting > 0 || room {
            return false;
        }
        for f in self.pending_flushes.drain(..) {
            self.flushed.push((f.reply, true));
        }
        true
    }

    pub(super) fn flush(&mut self, reply: Reply) {
        if self.destroyed {
            let _ = reply.send(Ok(false));
            return;
        }
        if self.flush_all_maybe() {
            let _ = reply.send(Ok(true));
            return;
        }
        let open = self
            .all
            .values()
            .filter(|c| matches!(c.state, ConnState::Open(_)))
            .count();
        let pending = self.all.len() - open;
        if self.queue.is_empty() && pending == 0 {
            let _ = reply.send(Ok(true));
            return;
        }
        self.pending_flushes.push(PendingFlush {
            reply,
            missing: self.queue.len() + pending,
            tick: self.flush_tick,
        });
        self.flush_tick += 1;
    }
}
