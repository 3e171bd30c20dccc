//! Bootstrap and network state: the quick firewall probe, PING_NAT checks, and the switch to a persistent id.

use super::*;

impl RpcNode {
    pub(super) fn start_bootstrap(&mut self) {
        self.bootstrap = Some(BootstrapState {
            iteration: 0,
            quick_nat_pending: self.firewalled
                && self.config.quick_firewall
                && !self.force_persistent,
            nat_reachable: false,
        });
        let target = *self.table.id();
        self.background_query(target, QueryRole::Bootstrap);
    }

    pub(super) fn on_bootstrap_data(&mut self, reply: &Reply) {
        let Some(b) = &mut self.bootstrap else {
            return;
        };
        if !b.quick_nat_pending {
            return;
        }
        b.quick_nat_pending = false;
        let value = Some(self.server_port.to_le_bytes().to_vec());
        let _ = self.send_internal(Purpose::QuickNat, reply.from, None, PING_NAT, None, value);
    }

    pub(super) fn on_bootstrap_query_done(&mut self) {
        let Some(b) = &self.bootstrap else {
            return;
        };
        if self.bootstrapped || (!b.nat_reachable && !self.force_persistent) || b.iteration >= 1 {
            self.finish_bootstrap();
            return;
        }
        let only_firewall = !self.force_persistent;
        self.start_network_check(only_firewall, AfterCheck::Bootstrap);
    }

    pub(super) fn on_bootstrap_check_done(&mut self, changed: bool) {
        match &mut self.bootstrap {
            Some(b) if changed => {
                b.iteration += 1;
                let target = *self.table.id();
                self.background_query(target, QueryRole::Bootstrap);
            }
            _ => self.finish_bootstrap(),
        }
    }

    pub(super) fn finish_bootstrap(&mut self) {
        self.bootstrap = None;
        if self.bootstrapped {
            return;
        }
        self.bootstrapped = true;
        self.push_event(Event::Bootstrapped);
    }

    /// dht-rpc's `_updateNetworkState`: decides whether we are reachable and, unless only the
    /// firewall is in question, whether to become persistent.
    pub(super) fn start_network_check(&mut self, only_firewall: bool, then: AfterCheck) {
        let settle = |node: &mut Self, changed: bool| {
            if then == AfterCheck::Bootstrap {
                node.on_bootstrap_check_done(changed);
            }
        };
        if self.network_check.is_some() || !self.ephemeral || (only_firewall && !self.firewalled) {
            return settle(self, false);
        }
        let (host, port) = (self.nat.host(), self.nat.port());
        if !only_firewall {
            self.stable_ticks = MORE_STABLE_TICKS;
            self.last_host = Some(host);
        }
        if host.is_none() || port == 0 {
            return settle(self, false);
        }
        let mut check = NetworkCheck {
            only_firewall,
            host,
            port,
            then,
            probes_left: 0,
            probes: 0,
            replies: Vec::new(),
            hosts_on_server: HashSet::new(),
        };
        if !self.firewalled {
            let sampler = self.nat.clone();
            return self.complete_network_check(check, false, sampler, false);
        }
        // Probe our server socket through the most recently seen nodes (and bootstrappers).
        let mut targets: Vec<(u64, SocketAddr)> =
            self.table.iter().map(|n| (n.recency, n.addr)).collect();
        targets.sort_unstable_by_key(|t| std::cmp::Reverse(t.0));
        let mut targets: Vec<SocketAddr> = targets.into_iter().take(5).map(|t| t.1).collect();
        if targets.len() < 5 {
            targets.extend(self.config.bootstrap.iter().copied());
        }
        if targets.is_empty() {
            return settle(self, false);
        }
        check.probes = targets.len();
        check.probes_left = targets.len();
        self.network_check = Some(check);
        let value = self.server_port.to_le_bytes().to_vec();
        for t in targets {
            let sent = self.send_internal(
                Purpose::FirewallProbe,
                t,
                None,
                PING_NAT,
                None,
                Some(value.clone()),
            );
            if sent.is_err() {
                self.on_probe_result(None);
            }
        }
    }

    pub(super) fn on_probe_result(&mut self, reply: Option<Reply>) {
        let Some(check) = &mut self.network_check else {
            return;
        };
        check.replies.extend(reply);
        check.probes_left -= 1;
        if check.probes_left > 0 {
            return;
        }
        let check = self.network_check.take().expect("present");
        let mut sampler = NatSampler::new();
        let mut count = 0;
        for r in &check.replies {
            if let (true, Some(to)) = (check.hosts_on_server.contains(&r.from.ip()), r.to) {
                count += 1;
                sampler.add(to.ip(), to.port());
            }
        }
        let needed = if check.probes >= 5 { 3 } else { 1 };
        let firewalled = count < needed
            || sampler.host().is_none()
            || self.nat.host() != sampler.host()
            || sampler.port() == 0
            || sampler.port() != self.server_port;
        self.complete_network_check(check, firewalled, sampler, true);
    }

    pub(super) fn complete_network_check(
        &mut self,
        check: NetworkCheck,
        firewalled: bool,
        sampler: NatSampler,
        fresh_sampler: bool,
    ) {
        let changed = self.apply_network_check(&check, firewalled, sampler, fresh_sampler);
        if check.then == AfterCheck::Bootstrap {
            self.on_bootstrap_check_done(changed);
        }
    }

    pub(super) fn apply_network_check(
        &mut self,
        check: &NetworkCheck,
        firewalled: bool,
        sampler: NatSampler,
        fresh_sampler: bool,
    ) -> bool {
        if firewalled {
            return false;
        }
        self.firewalled = false;
        if !self.ephemeral || check.host != self.nat.host() || check.port != self.nat.port() {
            return false;
        }
        let (Some(host), port) = (sampler.host(), sampler.port()) else {
            return false;
        };
        if Some(host) != check.host || port == 0 {
            return false;
        }
        let Some(id) = NodeId::from_addr(&SocketAddr::new(host, port)) else {
            return false;
        };
        if !check.only_firewall {
            self.ephemeral = false;
        }
        if fresh_sampler {
            let before = (self.nat.host(), self.nat.port());
            self.non_persistent_samples.clear();
            self.nat = sampler;
            if before != (self.nat.host(), self.nat.port()) {
                self.push_event(Event::NatUpdate(self.nat.host(), self.nat.port()));
            }
        }
        if *self.table.id() != id {
            let mut table = RoutingTable::new(id);
            for n in self.table.iter() {
                if n.id != id {
                    table.add(n.clone());
                }
            }
            self.table = table;
            if self.bootstrapped {
                self.refresh();
            }
        }
        if !self.ephemeral {
            self.push_event(Event::Persistent(id));
        }
        true
    }
}
