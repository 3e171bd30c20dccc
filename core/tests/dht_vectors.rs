//! Byte-exact checks of HyperDHT keys, targets, namespaces and record payloads against the
//! vectors generated from JS hyperdht. Connection-establishment payloads are checked in
//! `dht_connect_vectors.rs`; between the two files every `hyperdht*` vector is covered, and
//! `every_hyperdht_vector_has_a_check` fails when a new one appears.

use std::net::SocketAddr;

use hyperswarm::dht::namespaces::{
    ns, ANNOUNCE, MUTABLE_PUT, PEER_HANDSHAKE, PEER_HOLEPUNCH, PLUGIN, UNANNOUNCE,
};
use hyperswarm::dht::records::{announce_signable, mutable_signable};
use hyperswarm::dht::{
    hash, peer_target, verify, Announce, KeyPair, LookupReply, MutablePut, MutableValue,
    PeerRecord, PluginRequest,
};
use hyperswarm::rpc::{Message, NodeId, Request};
use serde_json::Value;

mod common;
use common::{arr, bytes, vector, vectors};

/// Checked here.
const RECORD_VECTORS: &[&str] = &[
    "hyperdht/keypair/seed-00..1f",
    "hyperdht/keypair/seed-20..3f",
    "hyperdht/find-peer-target",
    "hyperdht/namespaces",
    "hyperdht/peer-record",
    "hyperdht/lookup-reply",
    "hyperdht/announce/signature",
    "hyperdht/announce/value",
    "hyperdht/announce/request",
    "hyperdht/announce/value-with-bump",
    "hyperdht/unannounce",
    "hyperdht/mutable-put",
    "hyperdht/immutable-target",
    "hyperdht/plugin-request",
];

/// Checked in `dht_connect_vectors.rs`.
const CONNECT_VECTORS: &[&str] = &[
    "hyperdht-address",
    "hyperdht/noise-payload/client",
    "hyperdht/noise-payload/server",
    "hyperdht/noise-payload/relay-through",
    "hyperdht/peer-handshake/wrappers",
    "hyperdht/peer-handshake/request-datagram",
    "hyperdht/holepunch-payload/plain",
    "hyperdht/holepunch-payload/punching",
    "hyperdht/holepunch-payload/encrypted",
    "hyperdht/holepunch-token",
    "hyperdht/peer-holepunch/wrapper",
];

fn id(v: &Value) -> NodeId {
    NodeId(arr(v))
}

fn addr(v: &Value) -> SocketAddr {
    format!("{}:{}", v["host"].as_str().unwrap(), v["port"])
        .parse()
        .unwrap()
}

fn seed_pair(v: &Value) -> KeyPair {
    KeyPair::from_seed(arr(v))
}

#[test]
fn every_hyperdht_vector_has_a_check() {
    for v in vectors() {
        let name = v["name"].as_str().unwrap();
        if name.starts_with("hyperdht") {
            assert!(
                RECORD_VECTORS.contains(&name) || CONNECT_VECTORS.contains(&name),
                "no check for vector {name}"
            );
        }
    }
}

#[test]
fn key_pairs_from_seeds() {
    for name in [
        "hyperdht/keypair/seed-00..1f",
        "hyperdht/keypair/seed-20..3f",
    ] {
        let v = vector(name);
        let kp = seed_pair(&v["inputs"]["seed"]);
        assert_eq!(kp.public_key().to_vec(), bytes(&v["expected"]["publicKey"]));
        assert_eq!(kp.secret_key().to_vec(), bytes(&v["expected"]["secretKey"]));
    }
}

#[test]
fn targets_and_namespaces() {
    let v = vector("hyperdht/find-peer-target");
    assert_eq!(
        peer_target(&arr(&v["inputs"]["publicKey"])),
        id(&v["expected"]["target"])
    );

    let v = vector("hyperdht/immutable-target");
    assert_eq!(
        hash(&bytes(&v["inputs"]["value"])),
        id(&v["expected"]["target"])
    );

    let v = vector("hyperdht/namespaces");
    assert_eq!(hash(b"hyperswarm/dht"), id(&v["inputs"]["nameHash"]));
    for (name, n) in [
        ("ANNOUNCE", ANNOUNCE),
        ("UNANNOUNCE", UNANNOUNCE),
        ("MUTABLE_PUT", MUTABLE_PUT),
        ("PEER_HANDSHAKE", PEER_HANDSHAKE),
        ("PEER_HOLEPUNCH", PEER_HOLEPUNCH),
        ("PLUGIN", PLUGIN),
    ] {
        assert_eq!(v["inputs"]["ids"][name], u64::from(n));
        assert_eq!(ns(n).to_vec(), bytes(&v["expected"][name]), "{name}");
    }
}

#[test]
fn peer_records_and_lookup_replies() {
    let v = vector("hyperdht/peer-record");
    let rec = PeerRecord {
        public_key: arr(&v["inputs"]["publicKey"]),
        relay_addresses: v["inputs"]["relayAddresses"]
            .as_array()
            .unwrap()
            .iter()
            .map(addr)
            .collect(),
    };
    let expected = bytes(&v["expected"]["bytes"]);
    assert_eq!(rec.encode().unwrap(), expected);
    assert_eq!(PeerRecord::decode(&expected).unwrap(), rec);

    let v = vector("hyperdht/lookup-reply");
    let peers: Vec<PeerRecord> = v["decoded"]["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| PeerRecord {
            public_key: arr(&p["publicKey"]),
            relay_addresses: p["relayAddresses"]
                .as_array()
                .unwrap()
                .iter()
                .map(addr)
                .collect(),
        })
        .collect();
    let reply = LookupReply {
        peers,
        bump: v["inputs"]["bump"].as_u64().unwrap(),
    };
    let expected = bytes(&v["expected"]["bytes"]);
    assert_eq!(reply.encode().unwrap(), expected);
    assert_eq!(LookupReply::decode(&expected).unwrap(), reply);
    let raw: Vec<Vec<u8>> = v["inputs"]["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(bytes)
        .collect();
    let refs: Vec<&[u8]> = raw.iter().map(Vec::as_slice).collect();
    assert_eq!(LookupReply::encode_raw(&refs, 0), expected);
    // A reply without the trailing bump still decodes, with bump 0.
    assert_eq!(
        LookupReply::decode(&expected[..expected.len() - 1]).unwrap(),
        reply
    );
}

#[test]
fn announce_signature_value_and_datagram() {
    let v = vector("hyperdht/announce/signature");
    let i = &v["inputs"];
    let kp = seed_pair(&i["seed"]);
    let peer = PeerRecord::decode(&bytes(&i["peer"])).unwrap();
    let token: [u8; 32] = arr(&i["token"]);
    let signable = announce_signable(
        false,
        &id(&i["target"]),
        &id(&i["nodeId"]),
        &token,
        &peer,
        None,
    )
    .unwrap();
    assert_eq!(signable.to_vec(), bytes(&v["expected"]["signable"]));
    let signature = kp.sign(&signable);
    assert_eq!(signature.to_vec(), bytes(&v["expected"]["signature"]));
    assert!(verify(&kp.public_key(), &signable, &signature));
    let mut forged = signature;
    forged[10] ^= 1;
    assert!(!verify(&kp.public_key(), &signable, &forged));

    let v = vector("hyperdht/announce/value");
    let ann = Announce {
        peer: Some(PeerRecord::decode(&bytes(&v["inputs"]["peer"])).unwrap()),
        refresh: None,
        signature: Some(arr(&v["inputs"]["signature"])),
        bump: 0,
    };
    let value = bytes(&v["expected"]["bytes"]);
    assert_eq!(ann.encode().unwrap(), value);
    assert_eq!(Announce::decode(&value).unwrap(), ann);

    let v = vector("hyperdht/announce/value-with-bump");
    let bumped = Announce {
        bump: v["inputs"]["bump"].as_u64().unwrap(),
        ..ann.clone()
    };
    let expected = bytes(&v["expected"]["bytes"]);
    assert_eq!(bumped.encode().unwrap(), expected);
    assert_eq!(Announce::decode(&expected).unwrap(), bumped);

    let v = vector("hyperdht/announce/request");
    let i = &v["inputs"];
    let req = Request {
        tid: i["tid"].as_u64().unwrap() as u16,
        to: addr(&i["to"]),
        id: None,
        token: Some(arr(&i["token"])),
        internal: false,
        command: i["command"].as_u64().unwrap(),
        target: Some(id(&i["target"])),
        value: Some(bytes(&i["value"])),
    };
    let expected = bytes(&v["expected"]["bytes"]);
    assert_eq!(req.encode().unwrap(), expected);
    assert_eq!(Message::decode(&expected).unwrap(), Message::Request(req));
}

#[test]
fn unannounce() {
    let v = vector("hyperdht/unannounce");
    let i = &v["inputs"];
    let kp = seed_pair(&i["seed"]);
    let peer = PeerRecord {
        public_key: kp.public_key(),
        relay_addresses: Vec::new(),
    };
    let token: [u8; 32] = arr(&i["token"]);
    let signable = announce_signable(
        true,
        &id(&i["target"]),
        &id(&i["nodeId"]),
        &token,
        &peer,
        None,
    )
    .unwrap();
    assert_eq!(signable.to_vec(), bytes(&v["expected"]["signable"]));
    let signature = kp.sign(&signable);
    assert_eq!(signature.to_vec(), bytes(&v["expected"]["signature"]));
    let value = Announce {
        peer: Some(peer),
        refresh: None,
        signature: Some(signature),
        bump: 0,
    };
    assert_eq!(value.encode().unwrap(), bytes(&v["expected"]["value"]));
}

#[test]
fn mutable_put_and_get() {
    let v = vector("hyperdht/mutable-put");
    let i = &v["inputs"];
    let e = &v["expected"];
    let kp = seed_pair(&i["seed"]);
    let seq = i["seq"].as_u64().unwrap();
    let value = bytes(&i["value"]);
    assert_eq!(peer_target(&kp.public_key()), id(&e["target"]));
    let signable = mutable_signable(seq, &value);
    assert_eq!(signable.to_vec(), bytes(&e["signable"]));
    let signature = kp.sign(&signable);
    assert_eq!(signature.to_vec(), bytes(&e["signature"]));
    let put = MutablePut {
        public_key: kp.public_key(),
        seq,
        value: value.clone(),
        signature,
    };
    assert_eq!(put.encode(), bytes(&e["putRequestValue"]));
    assert_eq!(
        MutablePut::decode(&bytes(&e["putRequestValue"])).unwrap(),
        put
    );
    let stored = put.stored();
    assert_eq!(stored.encode(), bytes(&e["getResponseValue"]));
    assert_eq!(
        MutableValue::decode(&bytes(&e["getResponseValue"])).unwrap(),
        stored
    );
    assert!(stored.verify(&kp.public_key()));
    let other = MutableValue {
        seq: seq + 1,
        ..stored
    };
    assert!(!other.verify(&kp.public_key()), "the seq is signed");
    assert_eq!(bytes(&e["getRequestValue"]), vec![0]);
}

#[test]
fn plugin_request() {
    let v = vector("hyperdht/plugin-request");
    let i = &v["inputs"];
    let req = PluginRequest {
        plugin: i["plugin"].as_str().unwrap().into(),
        version: i["version"].as_u64().unwrap(),
        command: i["command"].as_u64().unwrap(),
        value: Some(bytes(&i["value"])),
    };
    let expected = bytes(&v["expected"]["bytes"]);
    assert_eq!(req.encode(), expected);
    assert_eq!(PluginRequest::decode(&expected).unwrap(), req);
}
