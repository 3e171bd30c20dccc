//! Routing-table upkeep (adding nodes, full buckets, liveness checks) and the 5 s tick.

use super::*;

impl RpcNode {
    pub(super) fn add_from_network(
        &mut self,
        sample: bool,
        from: SocketAddr,
        id: Option<NodeId>,
        to: SocketAddr,
    ) {
        let Some(id) = id else {
            self.sample_bootstrap_maybe(from, to);
            return;
        };
        let tick = self.tick;
        self.recency += 1;
        let recency = self.recency;
        if let Some(old) = self.table.get_mut(&id) {
            let mut nat_sample = None;
            if sample && (old.sampled == 0 || tick - old.sampled >= OLD_NODE) {
                old.to = Some(to);
                old.sampled = tick;
                nat_sample = Some(to);
            }
            old.pinged = tick;
            old.seen = tick;
            old.recency = recency;
            if let Some(to) = nat_sample {
                self.nat_add(to);
            }
            return;
        }
        let mut node = TableNode::new(from, id);
        node.to = Some(to);
        self.add_table_node(node);
    }

    pub(super) fn sample_bootstrap_maybe(&mut self, from: SocketAddr, to: SocketAddr) {
        if self.non_persistent_samples.len() >= self.config.bootstrap.len().max(1)
            || self.non_persistent_samples.contains(&from)
        {
            return;
        }
        self.non_persistent_samples.push(from);
        self.nat_add(to);
    }

    pub(super) fn add_table_node(&mut self, mut node: TableNode) {
        if node.id == *self.table.id() || self.table.get(&node.id).is_some() {
            return;
        }
        node.added = self.tick;
        node.pinged = self.tick;
        node.seen = self.tick;
        self.recency += 1;
        node.recency = self.recency;
        let sample = match node.to {
            Some(to) if node.sampled == 0 => {
                node.sampled = self.tick;
                Some(to)
            }
            _ => None,
        };
        match self.table.add(node.clone()) {
            Added::Yes => {
                if let Some(to) = sample {
                    self.nat_add(to);
                }
            }
            Added::Full(bucket) => self.on_full_bucket(node, bucket),
        }
    }

    pub(super) fn on_full_bucket(&mut self, new: TableNode, bucket: usize) {
        if !self.bootstrapped || self.repinging >= 3 {
            return;
        }
        let tick = self.tick;
        let oldest = self
            .table
            .bucket(bucket)
            .iter()
            .filter(|n| n.pinged != tick)
            .min_by_key(|n| (n.pinged, n.added));
        let Some(oldest) = oldest else {
            return;
        };
        if tick - oldest.pinged < RECENT_NODE && tick - oldest.added > OLD_NODE {
            return;
        }
        let (old, addr, last_seen) = (oldest.id, oldest.addr, oldest.seen);
        if let Some(n) = self.table.get_mut(&old) {
            n.pinged = tick;
        }
        self.repinging += 1;
        let purpose = Purpose::Reping {
            new,
            old,
            last_seen,
        };
        if self
            .send_internal(purpose, addr, None, PING, None, None)
            .is_err()
        {
            self.repinging -= 1;
        }
    }

    pub(super) fn check(&mut self, id: NodeId, addr: SocketAddr) {
        let tick = self.tick;
        let Some(node) = self.table.get_mut(&id) else {
            return;
        };
        node.pinged = tick;
        let last_seen = node.seen;
        self.checks += 1;
        let purpose = Purpose::Check { id, last_seen };
        if self
            .send_internal(purpose, addr, None, PING, None, None)
            .is_err()
        {
            self.checks -= 1;
        }
    }

    pub(super) fn ping_some(&mut self) {
        let mut by_age: Vec<(u64, NodeId, SocketAddr, u64)> = self
            .table
            .iter()
            .map(|n| (n.recency, n.id, n.addr, n.pinged))
            .collect();
        if by_age.is_empty() {
            self.refresh();
            return;
        }
        by_age.sort_unstable_by_key(|n| n.0);
        let mut count = if self.inflight.len() > 2 { 3 } else { 5 };
        if self.tick - by_age[0].3 < RECENT_NODE {
            count = 2;
        }
        let mut next = by_age.into_iter();
        let mut current = next.next();
        for _ in 0..count {
            match current {
                Some((_, id, addr, pinged)) if pinged != self.tick => {
                    self.check(id, addr);
                    current = next.next();
                }
                _ => {}
            }
        }
    }

    pub(super) fn nat_add(&mut self, to: SocketAddr) {
        let before = (self.nat.host(), self.nat.port());
        self.nat.add(to.ip(), to.port());
        let after = (self.nat.host(), self.nat.port());
        if before != after {
            self.push_event(Event::NatUpdate(after.0, after.1));
        }
    }

    // ---- timers ----

    pub(super) fn set_now(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
    }

    pub(super) fn on_drain(&mut self) {
        self.secrets.on_drain_tick();
        self.congestion.on_drain_tick();
        while !self.congestion.is_full() {
            let Some(tid) = self.queued.pop_front() else {
                break;
            };
            if self.inflight.contains_key(&tid) {
                self.transmit_now(tid);
            }
        }
    }

    pub(super) fn on_tick(&mut self) {
        let now = self.now;
        if now.saturating_duration_since(self.last_tick) > SLEEPING {
            self.on_wakeup();
        } else {
            self.tick += 1;
        }
        self.last_tick = now;
        if !self.bootstrapped {
            return;
        }
        if self.adaptive && self.ephemeral {
            self.stable_ticks -= 1;
            if self.stable_ticks <= 0 {
                if self.last_host == Some(self.nat.host()) {
                    self.stable_ticks = MORE_STABLE_TICKS;
                } else {
                    self.start_network_check(false, AfterCheck::Nothing);
                }
            }
        }
        if self.tick & 7 == 0 {
            self.ping_some();
        }
        let sparse = self.tick & 63 == 0 && self.table.len() < K;
        if sparse || {
            self.refresh_ticks -= 1;
            self.refresh_ticks <= 0
        } {
            self.refresh();
        }
        self.down_hints_this_tick = 0;
    }

    pub(super) fn on_wakeup(&mut self) {
        self.tick += 2 * OLD_NODE;
        self.tick += 8 - (self.tick & 7) - 2;
        self.stable_ticks = MORE_STABLE_TICKS;
        self.refresh_ticks = 1;
        self.last_host = None;
        if self.adaptive && !self.ephemeral {
            self.ephemeral = true;
            self.push_event(Event::Ephemeral);
        }
    }
}
