//! The storage side of HyperDHT fed hand-made requests through the sans-IO node: forged
//! signatures, missing tokens, reused or stale seqs, mismatched hashes and unknown commands
//! are refused or dropped, and nothing of theirs is stored.

use std::net::SocketAddr;
use std::time::Instant;

use hyperswarm::dht::errors::{SEQ_REUSED, SEQ_TOO_LOW};
use hyperswarm::dht::records::{announce_signable, mutable_signable};
use hyperswarm::dht::{
    commands, hash, Announce, DhtError, HyperDht, KeyPair, LookupReply, MutablePut, MutableValue,
    PeerRecord, Storage, MAX_VALUE_LEN,
};
use hyperswarm::rpc::{
    errors, Config, Message, NodeConfig, NodeId, Request, Response, RpcNode, SocketKind,
};

const CLIENT: &str = "10.0.0.2:40000";
const NODE: &str = "10.0.0.1:49737";

struct Lab {
    node: RpcNode,
    storage: Storage,
    now: Instant,
    tid: u16,
}

impl Lab {
    fn persistent() -> Self {
        let now = Instant::now();
        let addr: SocketAddr = NODE.parse().unwrap();
        let mut node = RpcNode::new(Config::bootstrapper(addr), addr.port(), now);
        let storage = Storage::new();
        node.set_handler(Box::new(storage.clone()));
        assert_eq!(
            node.id(),
            NodeId::from_addr(&addr),
            "a lone bootstrapper is persistent"
        );
        Lab {
            node,
            storage,
            now,
            tid: 0,
        }
    }

    fn ephemeral() -> Self {
        let now = Instant::now();
        let mut node = RpcNode::new(Config::default(), 49737, now);
        let storage = Storage::new();
        node.set_handler(Box::new(storage.clone()));
        Lab {
            node,
            storage,
            now,
            tid: 0,
        }
    }

    fn id(&self) -> NodeId {
        self.node.id().unwrap()
    }

    /// Sends a user request; returns the reply, or `None` if the node stayed silent.
    fn call(
        &mut self,
        command: u64,
        token: Option<[u8; 32]>,
        target: NodeId,
        value: Option<Vec<u8>>,
    ) -> Option<Response> {
        self.tid += 1;
        let req = Request {
            tid: self.tid,
            to: NODE.parse().unwrap(),
            id: None,
            token,
            internal: false,
            command,
            target: Some(target),
            value,
        };
        let from: SocketAddr = CLIENT.parse().unwrap();
        self.node
            .handle_datagram(self.now, SocketKind::Server, from, &req.encode().unwrap());
        let mut reply = None;
        while let Some(t) = self.node.poll_transmit() {
            assert_eq!(t.dest, from);
            if let Ok(Message::Response(r)) = Message::decode(&t.payload) {
                assert_eq!(r.tid, self.tid);
                reply = Some(r);
            }
        }
        reply
    }

    /// A valid token for the client, from a read the node answers with one.
    fn token(&mut self) -> [u8; 32] {
        self.call(commands::IMMUTABLE_GET, None, NodeId([0; 32]), None)
            .and_then(|r| r.token)
            .expect("reads hand out tokens")
    }

    fn lookup(&mut self, topic: NodeId) -> Vec<PeerRecord> {
        let r = self
            .call(commands::LOOKUP, None, topic, None)
            .expect("lookups are answered");
        r.value
            .map(|v| LookupReply::decode(&v).unwrap().peers)
            .unwrap_or_default()
    }
}

fn announce_value(
    lab: &Lab,
    kp: &KeyPair,
    topic: &NodeId,
    token: &[u8; 32],
    unannounce: bool,
) -> Announce {
    let peer = PeerRecord {
        public_key: kp.public_key(),
        relay_addresses: vec!["10.9.9.9:1000".parse().unwrap()],
    };
    let signable = announce_signable(unannounce, topic, &lab.id(), token, &peer, None).unwrap();
    Announce {
        peer: Some(peer),
        refresh: None,
        signature: Some(kp.sign(&signable)),
        bump: 0,
    }
}

#[test]
fn announces_need_a_token_and_a_valid_signature() {
    let mut lab = Lab::persistent();
    let kp = KeyPair::from_seed([7; 32]);
    let topic = NodeId([0x42; 32]);
    let token = lab.token();

    let mut forged = announce_value(&lab, &kp, &topic, &token, false);
    forged.signature.as_mut().unwrap()[0] ^= 0x80;
    let r = lab.call(
        commands::ANNOUNCE,
        Some(token),
        topic,
        Some(forged.encode().unwrap()),
    );
    assert!(r.is_none(), "a forged announce is dropped without a reply");

    let valid = announce_value(&lab, &kp, &topic, &token, false);
    let r = lab.call(
        commands::ANNOUNCE,
        None,
        topic,
        Some(valid.encode().unwrap()),
    );
    assert!(r.is_none(), "an announce without a token is dropped");

    // Signed for another storing node: the node id is part of what is signed.
    let other = Lab::persistent_at("10.0.0.7:49737");
    let wrong_node = announce_value(&other, &kp, &topic, &token, false);
    let r = lab.call(
        commands::ANNOUNCE,
        Some(token),
        topic,
        Some(wrong_node.encode().unwrap()),
    );
    assert!(r.is_none());
    assert!(lab.lookup(topic).is_empty(), "nothing was stored");

    let r = lab
        .call(
            commands::ANNOUNCE,
            Some(token),
            topic,
            Some(valid.encode().unwrap()),
        )
        .expect("a valid announce is acknowledged");
    assert_eq!(r.error, 0);
    assert!(r.token.is_none() && r.closer_nodes.is_empty() && r.value.is_none());
    assert_eq!(lab.lookup(topic), vec![valid.peer.clone().unwrap()]);

    // Unannounce: a bad signature leaves the record, a good one removes it.
    let mut bad = announce_value(&lab, &kp, &topic, &token, true);
    bad.signature.as_mut().unwrap()[5] ^= 1;
    assert!(lab
        .call(
            commands::UNANNOUNCE,
            Some(token),
            topic,
            Some(bad.encode().unwrap())
        )
        .is_none());
    assert_eq!(lab.lookup(topic).len(), 1);
    let good = announce_value(&lab, &kp, &topic, &token, true);
    assert!(lab
        .call(
            commands::UNANNOUNCE,
            Some(token),
            topic,
            Some(good.encode().unwrap())
        )
        .is_some());
    assert!(lab.lookup(topic).is_empty());
}

impl Lab {
    fn persistent_at(addr: &str) -> Self {
        let now = Instant::now();
        let addr: SocketAddr = addr.parse().unwrap();
        let node = RpcNode::new(Config::bootstrapper(addr), addr.port(), now);
        Lab {
            node,
            storage: Storage::new(),
            now,
            tid: 0,
        }
    }
}

#[test]
fn a_stale_token_is_refused_with_a_fresh_one() {
    let mut lab = Lab::persistent();
    let r = lab
        .call(
            commands::IMMUTABLE_PUT,
            Some([9; 32]),
            hash(b"x"),
            Some(b"x".to_vec()),
        )
        .expect("an invalid token gets an answer");
    assert_eq!(r.error, errors::INVALID_TOKEN);
    assert!(r.token.is_some(), "with a token to retry with");
    assert!(lab
        .storage
        .stores()
        .immutable(lab.now, &hash(b"x"))
        .is_none());
}

fn mutable(kp: &KeyPair, seq: u64, value: &[u8]) -> MutablePut {
    MutablePut {
        public_key: kp.public_key(),
        seq,
        value: value.to_vec(),
        signature: kp.sign(&mutable_signable(seq, value)),
    }
}

#[test]
fn mutable_values_check_signature_and_seq() {
    let mut lab = Lab::persistent();
    let kp = KeyPair::from_seed([3; 32]);
    let target = hash(&kp.public_key());
    let token = lab.token();
    let put = |lab: &mut Lab, p: &MutablePut| {
        lab.call(commands::MUTABLE_PUT, Some(token), target, Some(p.encode()))
    };

    let mut forged = mutable(&kp, 1, b"one");
    forged.value = b"uno".to_vec();
    assert!(
        put(&mut lab, &forged).is_none(),
        "forged signature: dropped"
    );
    let wrong_target = mutable(&KeyPair::from_seed([4; 32]), 1, b"one");
    assert!(
        put(&mut lab, &wrong_target).is_none(),
        "target must be hash(public key)"
    );
    assert!(lab.storage.stores().mutable(lab.now, &target).is_none());

    assert_eq!(put(&mut lab, &mutable(&kp, 2, b"two")).unwrap().error, 0);
    let reused = put(&mut lab, &mutable(&kp, 2, b"deux")).unwrap();
    assert_eq!(reused.error, SEQ_REUSED);
    assert!(
        reused.token.is_none(),
        "error replies carry no token, as in JS"
    );
    assert_eq!(
        put(&mut lab, &mutable(&kp, 1, b"one")).unwrap().error,
        SEQ_TOO_LOW
    );
    assert_eq!(
        put(&mut lab, &mutable(&kp, 2, b"two")).unwrap().error,
        0,
        "same seq, same value"
    );

    let get = |lab: &mut Lab, seq: u64| {
        lab.call(commands::MUTABLE_GET, None, target, Some(vec![seq as u8]))
            .unwrap()
            .value
            .map(|v| MutableValue::decode(&v).unwrap())
    };
    let got = get(&mut lab, 0).expect("stored");
    assert_eq!((got.seq, &got.value[..]), (2, &b"two"[..]));
    assert!(got.verify(&kp.public_key()));
    assert!(get(&mut lab, 3).is_none(), "older than the seq asked for");
}

#[test]
fn immutable_values_must_match_their_hash() {
    let mut lab = Lab::persistent();
    let token = lab.token();
    let r = lab.call(
        commands::IMMUTABLE_PUT,
        Some(token),
        hash(b"a"),
        Some(b"b".to_vec()),
    );
    assert!(r.is_none());
    assert!(lab
        .storage
        .stores()
        .immutable(lab.now, &hash(b"a"))
        .is_none());
    let r = lab.call(
        commands::IMMUTABLE_PUT,
        Some(token),
        hash(b"a"),
        Some(b"a".to_vec()),
    );
    assert_eq!(r.unwrap().error, 0);
    let got = lab
        .call(commands::IMMUTABLE_GET, None, hash(b"a"), None)
        .unwrap();
    assert_eq!(got.value.as_deref(), Some(&b"a"[..]));
}

#[test]
fn unknown_commands_and_ephemeral_nodes_answer_unknown_command() {
    let mut lab = Lab::persistent();
    let r = lab.call(42, None, NodeId([1; 32]), None).unwrap();
    assert_eq!(r.error, errors::UNKNOWN_COMMAND);

    let mut eph = Lab::ephemeral();
    for command in [
        commands::LOOKUP,
        commands::MUTABLE_GET,
        commands::IMMUTABLE_GET,
    ] {
        let r = eph
            .call(command, None, NodeId([1; 32]), Some(vec![0]))
            .unwrap();
        assert_eq!(
            r.error,
            errors::UNKNOWN_COMMAND,
            "ephemeral nodes store nothing"
        );
    }
}

#[test]
fn garbage_payloads_are_dropped() {
    let mut lab = Lab::persistent();
    let token = lab.token();
    let target = NodeId([5; 32]);
    // Each value is cut short inside its first field.
    for command in [
        commands::ANNOUNCE,
        commands::UNANNOUNCE,
        commands::MUTABLE_PUT,
        commands::MUTABLE_GET,
    ] {
        for value in [vec![], vec![0xff; 3], vec![0xfe, 0xff, 0xff]] {
            let r = lab.call(command, Some(token), target, Some(value.clone()));
            assert!(r.is_none(), "command {command} value {value:?}: {r:?}");
        }
    }
    assert!(lab.lookup(target).is_empty());
}

#[tokio::test]
async fn oversized_values_are_refused_before_sending() {
    // Binds no socket beyond loopback and sends nothing: the check precedes any traffic.
    let dht = HyperDht::bind(NodeConfig {
        host: "127.0.0.1".parse().unwrap(),
        ..NodeConfig::default()
    })
    .await
    .unwrap();
    let big = vec![0u8; MAX_VALUE_LEN + 1];
    let err = dht.immutable_put(&big).await.unwrap_err();
    assert_eq!(
        err,
        DhtError::ValueTooLarge {
            len: big.len(),
            max: MAX_VALUE_LEN
        }
    );
    let err = dht
        .mutable_put(&KeyPair::generate(), &big, 1)
        .await
        .unwrap_err();
    assert!(matches!(err, DhtError::ValueTooLarge { .. }));
}

fn self_announce(lab: &mut Lab, server: &KeyPair, from: SocketAddr) {
    let target = hash(&server.public_key());
    // Tokens are per IP: the server fetches its own with a read.
    let token = match &route(lab, from, 899, commands::IMMUTABLE_GET, target, vec![])[..] {
        [(_, Message::Response(r))] => r.token.expect("reads hand out tokens"),
        other => panic!("expected a token, got {other:?}"),
    };
    let peer = PeerRecord {
        public_key: server.public_key(),
        relay_addresses: Vec::new(),
    };
    let signable = announce_signable(false, &target, &lab.id(), &token, &peer, None).unwrap();
    let ann = Announce {
        peer: Some(peer),
        refresh: None,
        signature: Some(server.sign(&signable)),
        bump: 0,
    };
    let req = Request {
        tid: 900,
        to: NODE.parse().unwrap(),
        id: None,
        token: Some(token),
        internal: false,
        command: commands::ANNOUNCE,
        target: Some(target),
        value: Some(ann.encode().unwrap()),
    };
    lab.node
        .handle_datagram(lab.now, SocketKind::Server, from, &req.encode().unwrap());
    let acks: Vec<_> = std::iter::from_fn(|| lab.node.poll_transmit()).collect();
    assert_eq!(acks.len(), 1, "the self-announce is acknowledged");
    let Ok(Message::Response(ack)) = Message::decode(&acks[0].payload) else {
        panic!("not a response");
    };
    assert_eq!(ack.error, 0, "accepted, not refused");
}

/// Sends `value` for `command` from `from` and returns every datagram the node emitted.
fn route(
    lab: &mut Lab,
    from: SocketAddr,
    tid: u16,
    command: u64,
    target: NodeId,
    value: Vec<u8>,
) -> Vec<(SocketAddr, Message)> {
    let req = Request {
        tid,
        to: NODE.parse().unwrap(),
        id: None,
        token: None,
        internal: false,
        command,
        target: Some(target),
        value: Some(value),
    };
    lab.node
        .handle_datagram(lab.now, SocketKind::Server, from, &req.encode().unwrap());
    std::iter::from_fn(|| lab.node.poll_transmit())
        .map(|t| (t.dest, Message::decode(&t.payload).unwrap()))
        .collect()
}

#[test]
fn handshakes_are_relayed_to_announced_servers_and_back() {
    use hyperswarm::dht::connect_messages::{HandshakeMessage, HandshakeMode, HolepunchMessage};
    let mut lab = Lab::persistent();
    let server = KeyPair::from_seed([11; 32]);
    let server_addr: SocketAddr = "10.0.0.5:5000".parse().unwrap();
    let client_addr: SocketAddr = CLIENT.parse().unwrap();
    let target = hash(&server.public_key());

    // Before the server announces, a client's handshake gets an empty answer.
    let hs = HandshakeMessage {
        mode: HandshakeMode::FromClient,
        noise: vec![1, 2, 3],
        peer_address: None,
        relay_address: None,
    };
    let out = route(
        &mut lab,
        client_addr,
        77,
        commands::PEER_HANDSHAKE,
        target,
        hs.encode().unwrap(),
    );
    match &out[..] {
        [(to, Message::Response(r))] => {
            assert_eq!(*to, client_addr);
            assert!(r.value.is_none());
        }
        other => panic!("expected one empty response, got {other:?}"),
    }

    self_announce(&mut lab, &server, server_addr);

    // 1 → 2: the client's message goes on to the server, same tid, client address attached.
    let out = route(
        &mut lab,
        client_addr,
        77,
        commands::PEER_HANDSHAKE,
        target,
        hs.encode().unwrap(),
    );
    let [(to, Message::Request(fwd))] = &out[..] else {
        panic!("expected one forwarded request, got {out:?}");
    };
    assert_eq!(
        (*to, fwd.tid, fwd.command),
        (server_addr, 77, commands::PEER_HANDSHAKE)
    );
    let m = HandshakeMessage::decode(fwd.value.as_deref().unwrap()).unwrap();
    assert_eq!(m.mode, HandshakeMode::FromRelay);
    assert_eq!(
        (m.noise.as_slice(), m.peer_address),
        (&[1u8, 2, 3][..], Some(client_addr))
    );

    // 3 → 4: the server's answer becomes a response to the client, server address attached.
    let back = HandshakeMessage {
        mode: HandshakeMode::FromServer,
        noise: vec![4, 5],
        peer_address: Some(client_addr),
        relay_address: None,
    };
    let out = route(
        &mut lab,
        server_addr,
        77,
        commands::PEER_HANDSHAKE,
        target,
        back.encode().unwrap(),
    );
    let [(to, Message::Response(res))] = &out[..] else {
        panic!("expected one response, got {out:?}");
    };
    assert_eq!((*to, res.tid, res.to), (client_addr, 77, Some(client_addr)));
    assert!(res.token.is_none() && res.closer_nodes.is_empty());
    let m = HandshakeMessage::decode(res.value.as_deref().unwrap()).unwrap();
    assert_eq!(
        (m.mode, m.peer_address),
        (HandshakeMode::Reply, Some(server_addr))
    );

    // Holepunch: forwarded to the named peer, and answered back the same way.
    let hp = HolepunchMessage {
        mode: HandshakeMode::FromClient,
        id: 3,
        payload: vec![9; 40],
        peer_address: Some(server_addr),
    };
    let out = route(
        &mut lab,
        client_addr,
        78,
        commands::PEER_HOLEPUNCH,
        target,
        hp.encode().unwrap(),
    );
    let [(to, Message::Request(fwd))] = &out[..] else {
        panic!("expected a forwarded holepunch, got {out:?}");
    };
    assert_eq!(*to, server_addr);
    let m = HolepunchMessage::decode(fwd.value.as_deref().unwrap()).unwrap();
    assert_eq!(
        (m.mode, m.id, m.peer_address),
        (HandshakeMode::FromRelay, 3, Some(client_addr))
    );
    let back = HolepunchMessage {
        mode: HandshakeMode::FromServer,
        id: 0,
        payload: vec![8; 40],
        peer_address: Some(client_addr),
    };
    let out = route(
        &mut lab,
        server_addr,
        78,
        commands::PEER_HOLEPUNCH,
        target,
        back.encode().unwrap(),
    );
    let [(to, Message::Response(res))] = &out[..] else {
        panic!("expected a holepunch response, got {out:?}");
    };
    assert_eq!(*to, client_addr);
    let m = HolepunchMessage::decode(res.value.as_deref().unwrap()).unwrap();
    assert_eq!(
        (m.mode, m.peer_address),
        (HandshakeMode::Reply, Some(server_addr))
    );

    // A server reply without the client's address is dropped.
    let orphan = HandshakeMessage {
        mode: HandshakeMode::FromServer,
        noise: vec![4],
        peer_address: None,
        relay_address: None,
    };
    assert!(route(
        &mut lab,
        server_addr,
        79,
        commands::PEER_HANDSHAKE,
        target,
        orphan.encode().unwrap()
    )
    .is_empty());
}
