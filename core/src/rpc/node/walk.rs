//! Iterative queries: seeding, visiting, expanding closer nodes, DOWN_HINTs, finishing.

use super::*;

impl RpcNode {
    pub(super) fn background_query(&mut self, target: NodeId, role: QueryRole) -> QueryId {
        self.refresh_ticks = REFRESH_TICKS;
        let c = self.config.concurrency;
        let background = c.min((c / 8).max(2));
        let opts = QueryOptions {
            concurrency: Some(background),
            ..QueryOptions::default()
        };
        self.start_query(target, true, FIND_NODE, None, opts, role)
    }

    pub(super) fn start_query(
        &mut self,
        target: NodeId,
        internal: bool,
        command: u64,
        value: Option<Vec<u8>>,
        opts: QueryOptions,
        role: QueryRole,
    ) -> QueryId {
        let id = QueryId(self.next_query);
        self.next_query += 1;
        self.stats.queries += 1;
        let default_retries = if internal && command == DOWN_HINT {
            3
        } else {
            5
        };
        let mut query = Query::new(
            target,
            internal,
            command,
            value,
            opts.concurrency.unwrap_or(self.config.concurrency).max(1),
            opts.retries.unwrap_or(default_retries),
        );
        for addr in opts.nodes.iter().rev() {
            if let Some(nid) = NodeId::from_addr(addr) {
                query.add_pending(
                    Candidate {
                        addr: *addr,
                        id: nid,
                    },
                    None,
                );
            }
        }
        self.queries.insert(id, QueryEntry { query, role });
        // dht-rpc's _open: top up from the table, then from the bootstrap list.
        self.add_from_table(id);
        let needs_bootstrap = self
            .queries
            .get(&id)
            .is_some_and(|e| e.query.pending_len() < K);
        if needs_bootstrap {
            let boot: Vec<SocketAddr> = self.config.bootstrap.clone();
            if let Some(e) = self.queries.get_mut(&id) {
                for addr in boot {
                    if let Some(nid) = NodeId::from_addr(&addr) {
                        e.query.add_pending(Candidate { addr, id: nid }, None);
                    }
                }
            }
        }
        self.read_more(id);
        id
    }

    pub(super) fn add_from_table(&mut self, id: QueryId) {
        let Some(e) = self.queries.get_mut(&id) else {
            return;
        };
        let q = &mut e.query;
        if q.pending_len() >= K {
            return;
        }
        q.from_table = true;
        let want = K - q.pending_len();
        let found: Vec<Candidate> = self
            .table
            .closest(&q.target, want)
            .into_iter()
            .map(|n| Candidate {
                addr: n.addr,
                id: n.id,
            })
            .collect();
        for c in found {
            q.add_pending(c, None);
        }
    }

    pub(super) fn read_more(&mut self, id: QueryId) {
        loop {
            let Some(e) = self.queries.get_mut(&id) else {
                return;
            };
            if e.query.finished {
                return;
            }
            let visits = e.query.next_visits();
            let (internal, command, target, value, retries) = (
                e.query.internal,
                e.query.command,
                e.query.target,
                e.query.value.clone(),
                e.query.retries,
            );
            for c in visits {
                let sent = self.send_request(
                    Purpose::Query(id),
                    c.addr,
                    Some(c.id),
                    None,
                    internal,
                    command,
                    Some(target),
                    value.clone(),
                    retries,
                    REQUEST_TIMEOUT,
                    false,
                );
                if sent.is_err() {
                    if let Some(e) = self.queries.get_mut(&id) {
                        e.query.on_error(c.addr, false, false);
                    }
                }
            }
            let Some(e) = self.queries.get_mut(&id) else {
                return;
            };
            if e.query.pending_len() > 0 || !e.query.is_exhausted() {
                return;
            }
            if e.query.wants_table_reseed() {
                self.add_from_table(id);
                continue;
            }
            self.finish_query(id);
            return;
        }
    }

    pub(super) fn on_query_result(
        &mut self,
        id: QueryId,
        dest: SocketAddr,
        was_slow: bool,
        result: Result<Reply, RequestError>,
    ) {
        let self_id = *self.table.id();
        let Some(e) = self.queries.get_mut(&id) else {
            return;
        };
        let reply = match result {
            Ok(reply) => reply,
            Err(err) => {
                let refs = e
                    .query
                    .on_error(dest, err == RequestError::Timeout, was_slow);
                for r in refs {
                    self.down_hint(r, dest);
                }
                self.read_more(id);
                return;
            }
        };
        e.query.on_reply(&reply, was_slow);
        tracing::trace!(query = id.0, from = %reply.from, closer = ?reply.closer_nodes, "query reply");
        if e.query.finished {
            return;
        }
        let mut hints = Vec::new();
        for addr in reply.closer_nodes.iter().take(K) {
            let Some(nid) = NodeId::from_addr(addr) else {
                continue;
            };
            if nid == self_id {
                continue;
            }
            let (closer, hint) = e.query.add_pending(
                Candidate {
                    addr: *addr,
                    id: nid,
                },
                Some(reply.from),
            );
            hints.extend(hint);
            // dht-rpc stops at the first candidate that is not closer, but responders list
            // nodes in bucket order, not by distance, so nearer ones can follow a farther
            // one. Scanning the whole (at most k long) list finds them.
            let _ = closer;
        }
        e.query.after_reply();
        let role = e.query_role();
        for (to, down) in hints {
            self.down_hint(to, down);
        }
        if reply.error == 0 {
            match role {
                QueryRole::User => self.push_event(Event::QueryReply(id, reply)),
                QueryRole::Bootstrap => self.on_bootstrap_data(&reply),
                QueryRole::Background => {}
            }
            if role != QueryRole::User {
                let c = self.config.concurrency;
                let busy = self.inflight.len() >= 3;
                if let Some(e) = self.queries.get_mut(&id) {
                    e.query.concurrency = if busy { c.min((c / 8).max(2)) } else { c };
                }
            }
        }
        self.read_more(id);
    }

    pub(super) fn down_hint(&mut self, to: SocketAddr, down: SocketAddr) {
        if let Some(limit) = self.config.down_hints_rate_limit {
            if self.down_hints_this_tick >= limit {
                return;
            }
        }
        self.down_hints_this_tick += 1;
        let mut w = Writer::with_capacity(6);
        if w.ipv4_address(&down).is_err() {
            return;
        }
        let value = Some(w.into_bytes());
        let _ = self.send_internal(Purpose::DownHint, to, None, DOWN_HINT, None, value);
    }

    pub(super) fn finish_query(&mut self, id: QueryId) {
        let Some(e) = self.queries.remove(&id) else {
            return;
        };
        match e.role {
            QueryRole::User => self.push_event(Event::QueryDone(id, e.query.closest)),
            QueryRole::Background => {}
            QueryRole::Bootstrap => self.on_bootstrap_query_done(),
        }
    }
}

impl QueryEntry {
    fn query_role(&self) -> QueryRole {
        self.role
    }
}
