//! The Kademlia routing table (kademlia-routing-table): 256 buckets of at most k nodes,
//! each bucket sorted by id.

use std::net::SocketAddr;

use super::id::NodeId;

/// Bucket capacity and the size of closest-node answers.
pub const K: usize = 20;

/// What the node remembers about a routing-table entry. Times are maintenance ticks.
#[derive(Debug, Clone)]
pub struct TableNode {
    /// hash(addr).
    pub id: NodeId,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Our address as this node last reported it (a NAT sample).
    pub to: Option<SocketAddr>,
    /// Tick of the last NAT sample taken from it; 0 if never.
    pub sampled: u64,
    /// Tick it was added.
    pub added: u64,
    /// Tick of our last interaction.
    pub pinged: u64,
    /// Tick we last heard from it.
    pub seen: u64,
    /// DOWN_HINTs received about it.
    pub down_hints: u32,
    /// Position in the last-seen order (higher is more recent).
    pub recency: u64,
}

impl TableNode {
    /// A fresh entry for `addr`.
    pub fn new(addr: SocketAddr, id: NodeId) -> Self {
        TableNode {
            id,
            addr,
            to: None,
            sampled: 0,
            added: 0,
            pinged: 0,
            seen: 0,
            down_hints: 0,
            recency: 0,
        }
    }
}

/// Outcome of [`RoutingTable::add`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// Inserted, or an entry with the same id was replaced.
    Yes,
    /// The bucket is full; the index lets the caller decide whether to evict.
    Full(usize),
}

/// The routing table around `id`.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    id: NodeId,
    buckets: Vec<Vec<TableNode>>,
    len: usize,
}

impl RoutingTable {
    /// An empty table around `id`.
    pub fn new(id: NodeId) -> Self {
        RoutingTable {
            id,
            buckets: vec![Vec::new(); 256],
            len: 0,
        }
    }

    /// The local id the buckets are relative to.
    pub fn id(&self) -> &NodeId {
        &self.id
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bucket index: the length of the common bit prefix with the local id.
    pub fn bucket_of(&self, id: &NodeId) -> usize {
        for i in 0..32 {
            let x = id.0[i] ^ self.id.0[i];
            if x != 0 {
                return i * 8 + x.leading_zeros() as usize;
            }
        }
        255
    }

    /// Inserts or replaces by id.
    pub fn add(&mut self, node: TableNode) -> Added {
        let b = self.bucket_of(&node.id);
        let bucket = &mut self.buckets[b];
        match bucket.binary_search_by(|n| n.id.cmp(&node.id)) {
            Ok(i) => {
                bucket[i] = node;
                Added::Yes
            }
            Err(_) if bucket.len() >= K => Added::Full(b),
            Err(i) => {
                bucket.insert(i, node);
                self.len += 1;
                Added::Yes
            }
        }
    }

    /// Removes by id.
    pub fn remove(&mut self, id: &NodeId) -> Option<TableNode> {
        let b = self.bucket_of(id);
        let bucket = &mut self.buckets[b];
        let i = bucket.binary_search_by(|n| n.id.cmp(id)).ok()?;
        self.len -= 1;
        Some(bucket.remove(i))
    }

    /// Looks up by id.
    pub fn get(&self, id: &NodeId) -> Option<&TableNode> {
        let bucket = &self.buckets[self.bucket_of(id)];
        bucket
            .binary_search_by(|n| n.id.cmp(id))
            .ok()
            .map(|i| &bucket[i])
    }

    /// Looks up by id, mutably.
    pub fn get_mut(&mut self, id: &NodeId) -> Option<&mut TableNode> {
        let b = self.bucket_of(id);
        let bucket = &mut self.buckets[b];
        bucket
            .binary_search_by(|n| n.id.cmp(id))
            .ok()
            .map(move |i| &mut bucket[i])
    }

    /// The members of one bucket.
    pub fn bucket(&self, index: usize) -> &[TableNode] {
        &self.buckets[index]
    }

    /// Up to `k` nodes near `target`: its own bucket, then buckets with smaller indexes
    /// (nearer to us), then larger ones. An approximation of an XOR sort, but the exact
    /// order JS responders put on the wire.
    pub fn closest(&self, target: &NodeId, k: usize) -> Vec<&TableNode> {
        let d = self.bucket_of(target);
        let mut out = Vec::with_capacity(k.min(self.len));
        let order = (0..=d).rev().chain(d + 1..256);
        for b in order {
            if out.len() >= k {
                break;
            }
            let take = (k - out.len()).min(self.buckets[b].len());
            out.extend(self.buckets[b][..take].iter());
        }
        out
    }

    /// Every node, nearest buckets first.
    pub fn iter(&self) -> impl Iterator<Item = &TableNode> {
        self.buckets.iter().rev().flatten()
    }

    /// Every node, mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut TableNode> {
        self.buckets.iter_mut().flatten()
    }

    /// The `n`-th node in bucket order, for picking a random member.
    pub fn nth(&self, mut n: usize) -> Option<&TableNode> {
        for b in &self.buckets {
            if n < b.len() {
                return Some(&b[n]);
            }
            n -= b.len();
        }
        None
    }
}
