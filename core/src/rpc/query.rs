//! Iterative Kademlia queries (dht-rpc `Query`): which nodes to ask next, which replies are
//! the closest, and when the walk is over. The node owns the sockets and timers; this type
//! only keeps the walk's state.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::id::NodeId;
use super::table::K;
use super::Reply;

/// Identifies a query inside one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryId(pub u64);

/// Options for a query.
#[derive(Debug, Clone, Default)]
pub struct QueryOptions {
    /// Requests in flight at once; the node's default (10) when `None`.
    pub concurrency: Option<usize>,
    /// Nodes to ask first (for example the closest nodes of an earlier query).
    pub nodes: Vec<SocketAddr>,
    /// Retransmissions per request; 5 when `None`.
    pub retries: Option<u32>,
}

/// A node to visit.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub addr: SocketAddr,
    pub id: NodeId,
}

#[derive(Debug)]
enum Seen {
    /// Waiting to be visited; the nodes that told us about it (for DOWN_HINTs).
    Refs(Vec<SocketAddr>),
    Done,
    Down,
}

/// The state of one walk towards `target`.
#[derive(Debug)]
pub(crate) struct Query {
    pub target: NodeId,
    pub internal: bool,
    pub command: u64,
    pub value: Option<Vec<u8>>,
    pub concurrency: usize,
    pub retries: u32,
    pub closest: Vec<Reply>,
    pub inflight: usize,
    pub slow: usize,
    pub successes: usize,
    pub errors: usize,
    pub from_table: bool,
    pub finished: bool,
    slowdown: bool,
    seen: HashMap<SocketAddr, Seen>,
    pending: Vec<Candidate>,
}

impl Query {
    pub fn new(
        target: NodeId,
        internal: bool,
        command: u64,
        value: Option<Vec<u8>>,
        concurrency: usize,
        retries: u32,
    ) -> Self {
        Query {
            target,
            internal,
            command,
            value,
            concurrency,
            retries,
            closest: Vec::new(),
            inflight: 0,
            slow: 0,
            successes: 0,
            errors: 0,
            from_table: false,
            finished: false,
            slowdown: false,
            seen: HashMap::new(),
            pending: Vec::new(),
        }
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Whether `id` would make it into the current best k.
    pub fn is_closer(&self, id: &NodeId) -> bool {
        match self.closest.last() {
            Some(last) if self.closest.len() >= K => {
                let last_id = last.from_id.expect("closest replies carry ids");
                self.target.cmp_distance(id, &last_id).is_lt()
            }
            _ => true,
        }
    }

    /// Offers a candidate learnt from `referrer` (None: seeded locally). Returns whether it
    /// was closer than the current k-th best, and a DOWN_HINT to send if it is known dead.
    pub fn add_pending(
        &mut self,
        c: Candidate,
        referrer: Option<SocketAddr>,
    ) -> (bool, Option<(SocketAddr, SocketAddr)>) {
        let closer = self.is_closer(&c.id);
        match self.seen.get_mut(&c.addr) {
            Some(Seen::Done) => (closer, None),
            Some(Seen::Down) => (closer, referrer.map(|r| (r, c.addr))),
            Some(Seen::Refs(refs)) => {
                refs.extend(referrer);
                (closer, None)
            }
            None if !closer => (false, None),
            None => {
                self.seen
                    .insert(c.addr, Seen::Refs(referrer.into_iter().collect()));
                self.pending.push(c);
                (true, None)
            }
        }
    }

    /// The candidates to send to now, honouring the concurrency limit.
    pub fn next_visits(&mut self) -> Vec<Candidate> {
        let limit = if self.slowdown { 3 } else { self.concurrency } + self.slow;
        let mut out = Vec::new();
        while self.inflight < limit {
            let Some(next) = self.pending.pop() else {
                break;
            };
            if !self.is_closer(&next.id) {
                continue;
            }
            self.inflight += 1;
            out.push(next);
        }
        // A query seeded with caller-supplied nodes lets them answer before going broad.
        if !self.from_table && self.successes == 0 && self.errors == 0 {
            self.slowdown = true;
        }
        out
    }

    /// Whether the walk has nothing left worth waiting for.
    pub fn is_exhausted(&self) -> bool {
        self.pending.is_empty()
            && (self.inflight == 0 || (self.slow == self.inflight && self.closest.len() >= K))
    }

    /// Whether the walk should be re-seeded from the routing table before finishing.
    pub fn wants_table_reseed(&self) -> bool {
        !self.from_table && self.successes < K / 4
    }

    /// A request of this query was answered (any error code). Returns DOWN_HINT-free
    /// bookkeeping only; the caller expands `closer_nodes` through [`Query::add_pending`].
    pub fn on_reply(&mut self, reply: &Reply, was_slow: bool) {
        self.dec(was_slow);
        self.seen.insert(reply.from, Seen::Done);
        if reply.error == 0 {
            self.successes += 1;
        } else {
            self.errors += 1;
        }
        if let (0, Some(id)) = (reply.error, reply.from_id) {
            if self.is_closer(&id) {
                self.push_closest(reply.clone());
            }
        }
    }

    /// Called after a reply's closer nodes were expanded.
    pub fn after_reply(&mut self) {
        if !self.from_table && self.successes + self.errors >= self.concurrency {
            self.slowdown = false;
        }
    }

    /// A request of this query failed. On a timeout, returns the nodes that referred us to
    /// the dead address so the caller can DOWN_HINT them.
    pub fn on_error(
        &mut self,
        addr: SocketAddr,
        timed_out: bool,
        was_slow: bool,
    ) -> Vec<SocketAddr> {
        let mut hints = Vec::new();
        if timed_out {
            if let Some(Seen::Refs(refs)) = self.seen.insert(addr, Seen::Down) {
                hints = refs;
            }
        }
        self.dec(was_slow);
        self.errors += 1;
        hints
    }

    /// A request of this query timed out once and is being retransmitted.
    pub fn on_cycle(&mut self) {
        self.slow += 1;
    }

    fn dec(&mut self, was_slow: bool) {
        if was_slow {
            self.slow -= 1;
        }
        self.inflight -= 1;
    }

    fn push_closest(&mut self, reply: Reply) {
        let id = reply.from_id.expect("closest replies carry ids");
        let target = self.target;
        match self
            .closest
            .binary_search_by(|r| target.cmp_distance(&r.from_id.expect("ids"), &id))
        {
            Ok(_) => {}
            Err(i) => {
                self.closest.insert(i, reply);
                self.closest.truncate(K);
            }
        }
    }
}
