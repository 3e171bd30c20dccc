//! Handling datagrams: requests (dht-rpc commands and user commands) and responses.

use super::*;

impl RpcNode {
    pub(super) fn on_request(
        &mut self,
        socket: SocketKind,
        from: SocketAddr,
        req: Request,
        external: bool,
    ) {
        let from_id = req.id.filter(|id| NodeId::from_addr(&from) == Some(*id));
        let incoming = IncomingRequest {
            tid: req.tid,
            from,
            from_id,
            to: req.to,
            token: req.token,
            command: req.command,
            target: req.target,
            value: req.value,
            socket,
        };
        if let Some(token) = &incoming.token {
            if !self.secrets.verify(&from.ip(), token) {
                let opts = ReplyOptions {
                    token: true,
                    closer_nodes: true,
                    to: None,
                };
                self.reply_error(&incoming, INVALID_TOKEN, opts);
                return;
            }
        }
        if from_id.is_some() {
            self.add_from_network(!external, from, from_id, req.to);
        }
        let plain = ReplyOptions {
            token: false,
            closer_nodes: false,
            to: None,
        };
        if req.internal {
            match incoming.command {
                PING => self.reply(&incoming, None, plain),
                DELAYED_PING => self.on_delayed_ping(&incoming),
                PING_NAT => {
                    let Some(port) = le_u16(incoming.value.as_deref()) else {
                        return;
                    };
                    if port == 0 {
                        return;
                    }
                    let to = SocketAddr::new(from.ip(), port);
                    self.reply(
                        &incoming,
                        None,
                        ReplyOptions {
                            to: Some(to),
                            ..plain
                        },
                    );
                }
                FIND_NODE => {
                    if incoming.target.is_some() {
                        self.reply(
                            &incoming,
                            None,
                            ReplyOptions {
                                closer_nodes: true,
                                ..plain
                            },
                        );
                    }
                }
                DOWN_HINT => {
                    let Some(v) = incoming.value.as_deref().filter(|v| v.len() >= 6) else {
                        return;
                    };
                    if self.checks < MAX_CHECKS {
                        let hinted = Reader::new(&v[..6]).ipv4_address().ok();
                        let id = hinted.and_then(|a| NodeId::from_addr(&a));
                        let tick = self.tick;
                        if let Some(node) = id.and_then(|id| self.table.get_mut(&id)) {
                            if node.pinged < tick || node.down_hints == 0 {
                                node.down_hints += 1;
                                let (id, addr) = (node.id, node.addr);
                                self.check(id, addr);
                            }
                        }
                    }
                    self.reply(&incoming, None, plain);
                }
                _ => self.reply_error(&incoming, UNKNOWN_COMMAND, plain_closer(&incoming)),
            }
            return;
        }
        let handled = match self.handler.take() {
            Some(mut h) => {
                let handled = h.on_request(&incoming, &mut Responder { node: self });
                self.handler = Some(h);
                handled
            }
            None => false,
        };
        if !handled {
            self.reply_error(&incoming, UNKNOWN_COMMAND, plain_closer(&incoming));
        }
    }

    pub(super) fn on_delayed_ping(&mut self, req: &IncomingRequest) {
        let Some(v) = req.value.as_deref().filter(|v| v.len() >= 4) else {
            return;
        };
        let ms = u32::from_le_bytes([v[0], v[1], v[2], v[3]]);
        let delay = Duration::from_millis(ms.into());
        if delay > self.config.max_ping_delay || self.delayed.len() >= MAX_DELAYED_PINGS {
            return;
        }
        let before = self.transmits.len();
        self.reply(
            req,
            None,
            ReplyOptions {
                token: false,
                closer_nodes: false,
                to: None,
            },
        );
        if self.transmits.len() > before {
            let t = self.transmits.pop_back().expect("just pushed");
            self.delayed.push((self.now + delay, t));
        }
    }

    pub(super) fn on_response(&mut self, from: SocketAddr, res: Response, external: bool) {
        let Some(r) = self.inflight.get(&res.tid) else {
            self.stats.dropped += 1;
            return;
        };
        if r.sent == 0 {
            // Still queued: nobody could have answered it.
            self.stats.dropped += 1;
            return;
        }
        let r = self.inflight.remove(&res.tid).expect("present");
        self.congestion.on_done();
        self.stats.responses += 1;
        let from_id = res.id.filter(|id| NodeId::from_addr(&from) == Some(*id));
        let reply = Reply {
            from,
            from_id,
            to: res.to,
            token: res.token,
            closer_nodes: res.closer_nodes,
            error: res.error,
            value: res.value,
            rtt: self.now.saturating_duration_since(r.started),
        };
        if let Some(to) = reply.to {
            self.add_from_network(!external, from, from_id, to);
        }
        self.on_request_done(r, Ok(reply));
    }

    pub(super) fn on_request_done(&mut self, r: Inflight, result: Result<Reply, RequestError>) {
        match r.purpose {
            Purpose::User(id) => self.push_event(Event::Response(id, result)),
            Purpose::Query(q) => self.on_query_result(q, r.dest, r.cycled, result),
            Purpose::QuickNat => {
                if result.is_ok() {
                    if let Some(b) = &mut self.bootstrap {
                        b.nat_reachable = true;
                    }
                }
            }
            Purpose::FirewallProbe => self.on_probe_result(result.ok()),
            Purpose::Check { id, last_seen } => {
                self.checks -= 1;
                let stale = match &result {
                    Ok(_) => self.table.get(&id).is_some_and(|n| n.seen <= last_seen),
                    Err(_) => true,
                };
                if stale {
                    self.table.remove(&id);
                }
            }
            Purpose::Reping {
                new,
                old,
                last_seen,
            } => {
                self.repinging -= 1;
                let alive =
                    result.is_ok() && self.table.get(&old).is_some_and(|n| n.seen > last_seen);
                if !alive {
                    self.table.remove(&old);
                    self.add_table_node(new);
                }
            }
            Purpose::DownHint => {}
        }
    }
}

pub(super) fn plain_closer(req: &IncomingRequest) -> ReplyOptions {
    ReplyOptions {
        token: false,
        closer_nodes: req.target.is_some(),
        to: None,
    }
}

pub(super) fn le_u16(v: Option<&[u8]>) -> Option<u16> {
    match v {
        Some(v) if v.len() >= 2 => Some(u16::from_le_bytes([v[0], v[1]])),
        _ => None,
    }
}
