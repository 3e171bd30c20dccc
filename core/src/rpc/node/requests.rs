//! Outgoing requests: transaction ids, the congestion window, retries and timeouts.

use super::*;

impl RpcNode {
    pub(super) fn send_internal(
        &mut self,
        purpose: Purpose,
        dest: SocketAddr,
        dest_id: Option<NodeId>,
        command: u64,
        target: Option<NodeId>,
        value: Option<Vec<u8>>,
    ) -> Result<u16, RequestError> {
        self.send_request(
            purpose,
            dest,
            dest_id,
            None,
            true,
            command,
            target,
            value,
            DEFAULT_RETRIES,
            REQUEST_TIMEOUT,
            false,
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_request(
        &mut self,
        purpose: Purpose,
        dest: SocketAddr,
        dest_id: Option<NodeId>,
        token: Option<[u8; 32]>,
        internal: bool,
        command: u64,
        target: Option<NodeId>,
        value: Option<Vec<u8>>,
        retries: u32,
        timeout: Duration,
        force: bool,
    ) -> Result<u16, RequestError> {
        if self.destroyed {
            return Err(RequestError::Destroyed);
        }
        if NodeId::from_addr(&dest).is_none() {
            return Err(RequestError::UnsupportedAddress(dest));
        }
        if !force && self.congestion.is_full() && self.queued.len() >= MAX_QUEUED {
            return Err(RequestError::Overloaded);
        }
        let socket = if self.firewalled {
            SocketKind::Client
        } else {
            SocketKind::Server
        };
        let mut tid = self.next_tid;
        while self.inflight.contains_key(&tid) {
            tid = tid.wrapping_add(1);
        }
        self.next_tid = tid.wrapping_add(1);
        let msg = Request {
            tid,
            to: dest,
            id: self.id_for(socket),
            token,
            internal,
            command,
            target,
            value,
        };
        let payload = msg
            .encode()
            .map_err(|_| RequestError::UnsupportedAddress(dest))?;
        self.stats.requests += 1;
        self.inflight.insert(
            tid,
            Inflight {
                purpose,
                dest,
                dest_id,
                socket,
                payload,
                sent: 0,
                retries,
                timeout,
                deadline: None,
                started: self.now,
                cycled: false,
            },
        );
        self.send_or_queue(tid, force);
        Ok(tid)
    }

    pub(super) fn send_or_queue(&mut self, tid: u16, force: bool) {
        if !force && self.congestion.is_full() {
            self.queued.push_back(tid);
        } else {
            self.transmit_now(tid);
        }
    }

    pub(super) fn transmit_now(&mut self, tid: u16) {
        let now = self.now;
        let Some(r) = self.inflight.get_mut(&tid) else {
            return;
        };
        r.sent += 1;
        r.deadline = Some(now + r.timeout);
        self.congestion.on_send();
        self.transmits.push_back(Transmit {
            socket: r.socket,
            dest: r.dest,
            payload: r.payload.clone(),
        });
    }

    pub(super) fn on_request_timeout(&mut self, tid: u16) {
        let Some(r) = self.inflight.get_mut(&tid) else {
            return;
        };
        r.deadline = None;
        let first_cycle = !r.cycled;
        let query = match r.purpose {
            Purpose::Query(q) => Some(q),
            _ => None,
        };
        let give_up = r.sent > r.retries;
        if let (Some(q), true) = (query, first_cycle) {
            r.cycled = true;
            if let Some(e) = self.queries.get_mut(&q) {
                e.query.on_cycle();
            }
        }
        if give_up {
            self.stats.timeouts += 1;
            let dest_id = self.inflight.get(&tid).and_then(|r| r.dest_id);
            self.fail_request(tid, RequestError::Timeout);
            if let Some(id) = dest_id {
                self.table.remove(&id);
            }
        } else {
            self.stats.retries += 1;
            self.send_or_queue(tid, false);
            if let (Some(q), true) = (query, first_cycle) {
                self.read_more(q);
            }
        }
    }

    pub(super) fn fail_request(&mut self, tid: u16, err: RequestError) {
        let Some(r) = self.inflight.remove(&tid) else {
            return;
        };
        self.congestion.on_done();
        self.on_request_done(r, Err(err));
    }

    pub(super) fn push_event(&mut self, e: Event) {
        if self.events.len() < MAX_EVENTS {
            self.events.push_back(e);
        }
    }
}
