//! Byte-exact checks of the hyperdht connection-establishment codecs
//! (`hyperswarm::dht::connect_messages`) against the vectors generated from the JS packages,
//! plus a no-panic sweep of every decoder over truncated and random input.
//!
//! Each vector in [`REQUIRED`] must be present in `vectors/vectors.json`: a missing one fails
//! the run instead of being skipped.

use std::net::{IpAddr, SocketAddr};

use hyperswarm::dht::connect_messages::{
    HandshakeMessage, HandshakeMode, HolepunchInfo, HolepunchMessage, HolepunchPayload,
    HyperdhtAddress, NoisePayload, RelayInfo, RelayThrough, SecretStreamInfo, SecurePayload,
    UdxInfo,
};
use hyperswarm::rpc::{Message, NodeId, Request};
use rand::{Rng, SeedableRng};
use serde_json::Value;

/// Every vector this file checks.
const REQUIRED: &[&str] = &[
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

fn vectors() -> Vec<Value> {
    let doc: Value =
        serde_json::from_str(include_str!("vectors/vectors.json")).expect("vectors.json parses");
    doc["vectors"].as_array().expect("vectors array").clone()
}

/// The vector called `name`; panics (failing the test) if it is missing.
fn vector(name: &str) -> Value {
    vectors()
        .into_iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("vector {name} missing from vectors.json"))
}

fn hex_of(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("valid hex")
}

fn key_of(v: &Value) -> [u8; 32] {
    hex_of(v).try_into().expect("32 bytes")
}

fn addr_of(v: &Value) -> SocketAddr {
    let host: IpAddr = v["host"].as_str().expect("host").parse().expect("ip");
    SocketAddr::new(host, v["port"].as_u64().expect("port") as u16)
}

/// A JSON address list; `null` or absent gives `None`.
fn addrs_of(v: &Value) -> Option<Vec<SocketAddr>> {
    v.as_array().map(|a| a.iter().map(addr_of).collect())
}

fn expected_bytes(v: &Value) -> Vec<u8> {
    hex_of(&v["expected"]["bytes"])
}

#[test]
fn every_required_vector_is_present() {
    let names: Vec<String> = vectors()
        .iter()
        .map(|v| v["name"].as_str().expect("name").to_string())
        .collect();
    for name in REQUIRED {
        assert!(
            names.iter().any(|n| n == name),
            "vector {name} missing from vectors.json"
        );
    }
}

#[test]
fn hyperdht_address() {
    let v = vector("hyperdht-address");
    let value = HyperdhtAddress {
        public_key: key_of(&v["inputs"]["key"]),
        nodes: addrs_of(&v["inputs"]["nodes"]).expect("nodes"),
    };
    let bytes = expected_bytes(&v);
    assert_eq!(value.encode().unwrap(), bytes);
    assert_eq!(HyperdhtAddress::decode(&bytes).unwrap(), value);

    // A bare key (no flags byte) is accepted, and decodes with no nodes.
    let bare = HyperdhtAddress::decode(&bytes[..32]).unwrap();
    assert_eq!(bare.public_key, value.public_key);
    assert!(bare.nodes.is_empty());
}

fn noise_payload_of(p: &Value) -> NoisePayload {
    NoisePayload {
        version: 1,
        error: p["error"].as_u64().expect("error"),
        firewall: p["firewall"].as_u64().expect("firewall"),
        holepunch: (!p["holepunch"].is_null()).then(|| HolepunchInfo {
            id: p["holepunch"]["id"].as_u64().expect("id"),
            relays: p["holepunch"]["relays"]
                .as_array()
                .expect("relays")
                .iter()
                .map(|r| RelayInfo {
                    relay_address: addr_of(&r["relayAddress"]),
                    peer_address: addr_of(&r["peerAddress"]),
                })
                .collect(),
        }),
        addresses4: addrs_of(&p["addresses4"]).unwrap_or_default(),
        addresses6: addrs_of(&p["addresses6"]).unwrap_or_default(),
        udx: (!p["udx"].is_null()).then(|| UdxInfo {
            version: 1,
            reusable_socket: p["udx"]["reusableSocket"].as_bool().expect("reusable"),
            id: p["udx"]["id"].as_u64().expect("udx id"),
            seq: p["udx"]["seq"].as_u64().expect("seq"),
        }),
        secret_stream: (!p["secretStream"].is_null()).then(SecretStreamInfo::default),
        relay_through: (!p["relayThrough"].is_null()).then(|| RelayThrough {
            version: 1,
            flags: 0,
            public_key: key_of(&p["relayThrough"]["publicKey"]),
            token: key_of(&p["relayThrough"]["token"]),
        }),
        relay_addresses: addrs_of(&p["relayAddresses"]),
    }
}

#[test]
fn noise_payloads() {
    for name in [
        "hyperdht/noise-payload/client",
        "hyperdht/noise-payload/server",
        "hyperdht/noise-payload/relay-through",
    ] {
        let v = vector(name);
        let value = noise_payload_of(&v["inputs"]["payload"]);
        let bytes = expected_bytes(&v);
        assert_eq!(value.encode().unwrap(), bytes, "{name}: encode");
        let decoded = NoisePayload::decode(&bytes).unwrap();
        assert_eq!(decoded, value, "{name}: decode");
        if !v["decoded"].is_null() {
            // What JS reports after decoding must describe the same value.
            assert_eq!(
                noise_payload_of(&v["decoded"]),
                decoded,
                "{name}: JS decode"
            );
        }
    }
}

#[test]
fn peer_handshake_wrappers() {
    let v = vector("hyperdht/peer-handshake/wrappers");
    let i = &v["inputs"];
    let (m1, m2) = (hex_of(&i["msg1"]), hex_of(&i["msg2"]));
    let client = addr_of(&i["clientAddress"]);
    let server = addr_of(&i["serverAddress"]);
    let second = addr_of(&i["secondRelayAddress"]);
    let msg = |mode, noise: &Vec<u8>, peer, relay| HandshakeMessage {
        mode,
        noise: noise.clone(),
        peer_address: peer,
        relay_address: relay,
    };
    let cases = [
        (
            "FROM_CLIENT",
            msg(HandshakeMode::FromClient, &m1, None, None),
        ),
        (
            "FROM_RELAY",
            msg(HandshakeMode::FromRelay, &m1, Some(client), None),
        ),
        (
            "FROM_SECOND_RELAY",
            msg(
                HandshakeMode::FromSecondRelay,
                &m1,
                Some(client),
                Some(second),
            ),
        ),
        (
            "FROM_SERVER",
            msg(HandshakeMode::FromServer, &m2, Some(client), None),
        ),
        ("REPLY", msg(HandshakeMode::Reply, &m2, Some(server), None)),
    ];
    let expected = v["expected"].as_object().expect("expected object");
    assert_eq!(expected.len(), cases.len(), "a wrapper case is unchecked");
    for (key, value) in cases {
        let bytes = hex_of(&v["expected"][key]);
        assert_eq!(value.encode().unwrap(), bytes, "{key}: encode");
        assert_eq!(HandshakeMessage::decode(&bytes).unwrap(), value, "{key}");
    }
}

#[test]
fn peer_handshake_request_datagram() {
    let v = vector("hyperdht/peer-handshake/request-datagram");
    let i = &v["inputs"];
    let request = Request {
        tid: i["tid"].as_u64().expect("tid") as u16,
        to: addr_of(&i["to"]),
        id: None,
        token: None,
        internal: false,
        command: 0, // PEER_HANDSHAKE
        target: Some(NodeId(key_of(&i["target"]))),
        value: Some(hex_of(&i["value"])),
    };
    let bytes = expected_bytes(&v);
    assert_eq!(request.encode().unwrap(), bytes);
    match Message::decode(&bytes).unwrap() {
        Message::Request(r) => {
            assert_eq!(r, request);
            let wrapper = HandshakeMessage::decode(r.value.as_deref().unwrap()).unwrap();
            assert_eq!(wrapper.mode, HandshakeMode::FromClient);
            assert_eq!(wrapper.peer_address, None);
        }
        other => panic!("expected a request, got {other:?}"),
    }
}

fn holepunch_payload_of(p: &Value) -> HolepunchPayload {
    HolepunchPayload {
        error: p["error"].as_u64().expect("error"),
        firewall: p["firewall"].as_u64().expect("firewall"),
        round: p["round"].as_u64().expect("round"),
        connected: p["connected"].as_bool().expect("connected"),
        punching: p["punching"].as_bool().expect("punching"),
        addresses: addrs_of(&p["addresses"]),
        remote_address: (!p["remoteAddress"].is_null()).then(|| addr_of(&p["remoteAddress"])),
        token: (!p["token"].is_null()).then(|| key_of(&p["token"])),
        remote_token: (!p["remoteToken"].is_null()).then(|| key_of(&p["remoteToken"])),
    }
}

#[test]
fn holepunch_payloads() {
    for name in [
        "hyperdht/holepunch-payload/plain",
        "hyperdht/holepunch-payload/punching",
    ] {
        let v = vector(name);
        let value = holepunch_payload_of(&v["inputs"]["payload"]);
        let bytes = expected_bytes(&v);
        assert_eq!(value.encode().unwrap(), bytes, "{name}: encode");
        assert_eq!(HolepunchPayload::decode(&bytes).unwrap(), value, "{name}");
    }
}

#[test]
fn holepunch_payload_encryption() {
    let v = vector("hyperdht/holepunch-payload/encrypted");
    let key = key_of(&v["inputs"]["key"]);
    let nonce: [u8; 24] = hex_of(&v["inputs"]["nonce"]).try_into().expect("24 bytes");
    let plain = hex_of(&v["inputs"]["plain"]);
    let bytes = expected_bytes(&v);
    let sp = SecurePayload::new(key);
    assert_eq!(sp.encrypt_with_nonce(nonce, &plain), bytes);
    assert_eq!(sp.decrypt(&bytes), Some(plain.clone()));

    // The plaintext is the "plain" payload vector; opening decodes it.
    let plain_vector = vector("hyperdht/holepunch-payload/plain");
    assert_eq!(expected_bytes(&plain_vector), plain);
    let payload = holepunch_payload_of(&plain_vector["inputs"]["payload"]);
    assert_eq!(sp.open(&bytes), Some(payload.clone()));

    // Random nonces: two seals differ but both open.
    let a = sp.seal(&payload).unwrap();
    let b = sp.seal(&payload).unwrap();
    assert_ne!(a, b);
    assert_eq!(sp.open(&a), Some(payload.clone()));
    assert_eq!(sp.open(&b), Some(payload));

    // A wrong key or a flipped bit does not open.
    assert_eq!(SecurePayload::new([0; 32]).decrypt(&bytes), None);
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x80;
        assert_eq!(sp.decrypt(&bad), None, "flipped byte {i}");
    }
}

#[test]
fn holepunch_secret_from_handshake_hash() {
    // The encrypted-payload key is the holepunch secret of the full Noise transcript vector.
    let v = vector("noise/ik/full-handshake");
    let hash: [u8; 64] = hex_of(&v["expected"]["handshakeHash"])
        .try_into()
        .expect("64 bytes");
    let secret = key_of(&v["expected"]["holepunchSecret"]);
    assert_eq!(SecurePayload::holepunch_secret(&hash), secret);
    let enc = vector("hyperdht/holepunch-payload/encrypted");
    assert_eq!(key_of(&enc["inputs"]["key"]), secret);
    let sp = SecurePayload::from_handshake_hash(&hash);
    assert!(sp.decrypt(&expected_bytes(&enc)).is_some());
}

#[test]
fn holepunch_token() {
    let v = vector("hyperdht/holepunch-token");
    let host: IpAddr = v["inputs"]["host"].as_str().unwrap().parse().unwrap();
    let secret = key_of(&v["inputs"]["localSecret"]);
    assert_eq!(
        SecurePayload::holepunch_token(&secret, &host),
        key_of(&v["expected"]["token"])
    );
}

#[test]
fn peer_holepunch_wrapper() {
    let v = vector("hyperdht/peer-holepunch/wrapper");
    let i = &v["inputs"];
    let value = HolepunchMessage {
        mode: HandshakeMode::from_u64(i["mode"].as_u64().unwrap()).expect("mode"),
        id: i["id"].as_u64().unwrap(),
        payload: hex_of(&i["payload"]),
        peer_address: (!i["peerAddress"].is_null()).then(|| addr_of(&i["peerAddress"])),
    };
    let bytes = expected_bytes(&v);
    assert_eq!(value.encode().unwrap(), bytes);
    assert_eq!(HolepunchMessage::decode(&bytes).unwrap(), value);
}

/// Runs every decoder on `bytes`; they may fail but must not panic.
fn decode_all(bytes: &[u8]) {
    let _ = HyperdhtAddress::decode(bytes);
    let _ = NoisePayload::decode(bytes);
    let _ = HandshakeMessage::decode(bytes);
    let _ = HolepunchMessage::decode(bytes);
    let _ = HolepunchPayload::decode(bytes);
    let sp = SecurePayload::new([3; 32]);
    let _ = sp.decrypt(bytes);
    let _ = sp.open(bytes);
}

#[test]
fn hostile_input_never_panics() {
    // Every prefix of every valid encoding.
    let mut samples: Vec<Vec<u8>> = Vec::new();
    for name in REQUIRED {
        let v = vector(name);
        if let Some(s) = v["expected"]["bytes"].as_str() {
            samples.push(hex::decode(s).unwrap());
        }
        if let Some(obj) = v["expected"].as_object() {
            for val in obj.values() {
                if let Some(b) = val.as_str().and_then(|s| hex::decode(s).ok()) {
                    samples.push(b);
                }
            }
        }
    }
    for s in &samples {
        for end in 0..=s.len() {
            decode_all(&s[..end]);
        }
    }

    // Truncated prefixes must be errors, not partial values, for the fixed-layout ones.
    let v = vector("hyperdht/noise-payload/server");
    let full = expected_bytes(&v);
    for end in 0..full.len() {
        assert!(NoisePayload::decode(&full[..end]).is_err(), "prefix {end}");
    }

    // Forged counts that promise more elements than there are bytes.
    for forged in [
        &[0x01, 0x01, 0x00, 0x00, 0x00, 0xfe, 0xff, 0xff, 0xff, 0xff][..],
        &[
            0x01, 0x02, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ],
        &[0x01, 0x04, 0x00, 0x00, 0xfd, 0xff, 0xff],
        &[0x01, 0x40, 0x00, 0x00, 0xfe, 0x00, 0x00, 0x10, 0x00],
        &[0x04, 0x00, 0x00, 0x00, 0xfe, 0xff, 0xff, 0xff, 0x7f],
        &[
            0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ],
    ] {
        decode_all(forged);
        assert!(NoisePayload::decode(forged).is_err() || forged[0] != 1);
    }

    // Random bytes, and random bytes behind plausible first bytes.
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    for _ in 0..20_000 {
        let len = rng.gen_range(0..96);
        let mut b: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        if !b.is_empty() && rng.gen_bool(0.5) {
            b[0] = rng.gen_range(0..8);
        }
        if b.len() > 1 && rng.gen_bool(0.5) {
            b[1] = rng.gen_range(0..128);
        }
        decode_all(&b);
    }
}
