//! Byte-exact checks against the vectors generated from the JS packages
//! (`tests/vectors/vectors.json`, copied from the protocol reference). Every `cenc/*` and
//! `dht-rpc/*` vector must have a check here: an unknown name fails the run, so a new
//! vector cannot be skipped silently.

use std::net::{IpAddr, SocketAddr};

use hyperswarm::crypto::hash::blake2b_256_keyed;
use hyperswarm::encoding::{Reader, Writer};
use hyperswarm::rpc::{
    Message, NodeId, Request, Response, RoutingTable, TableNode, TokenSecrets, K,
};
use serde_json::Value;

fn vectors() -> Vec<Value> {
    let text = include_str!("vectors/vectors.json");
    let doc: Value = serde_json::from_str(text).expect("vectors.json parses");
    doc["vectors"].as_array().expect("vectors array").clone()
}

fn hex_of(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("valid hex")
}

fn id_of(v: &Value) -> NodeId {
    NodeId(hex_of(v).try_into().expect("32 bytes"))
}

fn addr_of(v: &Value) -> SocketAddr {
    let host: IpAddr = v["host"].as_str().expect("host").parse().expect("ip");
    SocketAddr::new(host, v["port"].as_u64().expect("port") as u16)
}

fn opt<T>(v: &Value, f: impl Fn(&Value) -> T) -> Option<T> {
    if v.is_null() {
        None
    } else {
        Some(f(v))
    }
}

/// Runs `check` on every vector whose name starts with `prefix`; returns how many ran.
fn run(prefix: &str, check: impl Fn(&str, &Value, &[u8])) -> usize {
    let mut n = 0;
    for v in vectors() {
        let name = v["name"].as_str().expect("name").to_string();
        if !name.starts_with(prefix) {
            continue;
        }
        let bytes = v["expected"]["bytes"]
            .as_str()
            .map(|_| hex_of(&v["expected"]["bytes"]));
        check(&name, &v, bytes.as_deref().unwrap_or(&[]));
        n += 1;
    }
    n
}

#[test]
fn compact_encoding() {
    let n = run("cenc/", |name, v, bytes| {
        let input = &v["inputs"];
        let value = &input["value"];
        let kind = name.split('/').nth(1).expect("kind");
        let mut w = Writer::new();
        match kind {
            "uint" => {
                w.uint(value.as_u64().unwrap());
                assert_eq!(Reader::new(bytes).uint().unwrap(), value.as_u64().unwrap());
            }
            "uint16" => {
                w.u16(value.as_u64().unwrap() as u16);
                assert_eq!(
                    Reader::new(bytes).u16().unwrap() as u64,
                    value.as_u64().unwrap()
                );
            }
            "uint24" => {
                w.u24(value.as_u64().unwrap() as u32);
                assert_eq!(
                    Reader::new(bytes).u24().unwrap() as u64,
                    value.as_u64().unwrap()
                );
            }
            "uint32" => {
                w.u32(value.as_u64().unwrap() as u32);
                assert_eq!(
                    Reader::new(bytes).u32().unwrap() as u64,
                    value.as_u64().unwrap()
                );
            }
            "uint64" => {
                w.u64(value.as_u64().unwrap());
                assert_eq!(Reader::new(bytes).u64().unwrap(), value.as_u64().unwrap());
            }
            "int" => {
                w.int(value.as_i64().unwrap());
                assert_eq!(Reader::new(bytes).int().unwrap(), value.as_i64().unwrap());
            }
            "bool" => {
                w.bool(value.as_bool().unwrap());
                assert_eq!(Reader::new(bytes).bool().unwrap(), value.as_bool().unwrap());
            }
            "buffer" => {
                w.buffer(&hex_of(value));
                assert_eq!(Reader::new(bytes).buffer().unwrap(), hex_of(value));
            }
            "optionalBuffer" => {
                let b = opt(value, hex_of);
                w.optional_buffer(b.as_deref());
                assert_eq!(Reader::new(bytes).optional_buffer().unwrap(), b.as_deref());
            }
            "string" => {
                w.string(value.as_str().unwrap());
                assert_eq!(
                    Reader::new(bytes).string().unwrap(),
                    value.as_str().unwrap()
                );
            }
            "fixed32" => {
                w.raw(&hex_of(value));
                assert_eq!(
                    Reader::new(bytes).array::<32>().unwrap().to_vec(),
                    hex_of(value)
                );
            }
            "ipv4Address" => {
                w.ipv4_address(&addr_of(input)).unwrap();
                assert_eq!(Reader::new(bytes).ipv4_address().unwrap(), addr_of(input));
            }
            "array(ipv4Address)" => {
                let addrs: Vec<SocketAddr> =
                    value.as_array().unwrap().iter().map(addr_of).collect();
                w.ipv4_array(&addrs);
                assert_eq!(Reader::new(bytes).ipv4_array().unwrap(), addrs);
            }
            "ipv6Address" => {
                w.ipv6_address(&addr_of(input));
                assert_eq!(Reader::new(bytes).ipv6_address().unwrap(), addr_of(input));
            }
            "ipAddress" => {
                w.ip_address(&addr_of(input));
                assert_eq!(Reader::new(bytes).ip_address().unwrap(), addr_of(input));
            }
            other => panic!("no check for vector {name} (kind {other})"),
        }
        assert_eq!(hex::encode(w.as_bytes()), hex::encode(bytes), "{name}");
    });
    assert!(n >= 30, "expected the cenc vectors, ran {n}");
}

const JS_RESPONDER: &str = "88.99.3.86:49737";
const JS_REQUESTER: &str = "10.0.0.2:55000";

#[test]
fn dht_rpc() {
    let n = run("dht-rpc/", |name, v, bytes| {
        let input = &v["inputs"];
        let kind = name.split('/').nth(1).expect("kind");
        match kind {
            "node-id" => {
                let addr = addr_of(input);
                let mut w = Writer::new();
                w.ipv4_address(&addr).unwrap();
                assert_eq!(
                    hex::encode(w.as_bytes()),
                    input["preimage"].as_str().unwrap()
                );
                assert_eq!(
                    NodeId::from_addr(&addr).unwrap(),
                    id_of(&v["expected"]["id"])
                );
            }
            "request" => check_request(name, input, bytes, &v["decoded"]),
            "response" => check_response(name, input, bytes),
            other => panic!("no check for vector {name} (kind {other})"),
        }
    });
    assert!(n >= 13, "expected the dht-rpc vectors, ran {n}");
}

fn check_request(name: &str, input: &Value, bytes: &[u8], decoded: &Value) {
    let req = Request {
        tid: input["tid"].as_u64().unwrap() as u16,
        to: addr_of(&input["to"]),
        id: opt(&input["id"], id_of),
        token: opt(&input["token"], |t| hex_of(t).try_into().unwrap()),
        internal: input["internal"].as_bool().unwrap(),
        command: input["command"].as_u64().unwrap(),
        target: opt(&input["target"], id_of),
        value: opt(&input["value"], hex_of),
    };
    assert_eq!(
        hex::encode(req.encode().unwrap()),
        hex::encode(bytes),
        "{name}"
    );
    match Message::decode(bytes).unwrap() {
        Message::Request(back) => assert_eq!(back, req, "{name}"),
        Message::Response(_) => panic!("{name} decoded as a response"),
    }
    // The receiver keeps a sender id only when it matches the source address.
    if let Some(id) = opt(&decoded["fromId"], id_of) {
        let from = addr_of(&input["from"]);
        assert_eq!(
            NodeId::from_addr(&from),
            Some(id),
            "{name}: id is hash(from)"
        );
    }
}

fn check_response(name: &str, input: &Value, bytes: &[u8]) {
    let requester: SocketAddr = opt(&input["observedRequester"], addr_of)
        .or(opt(&input["requester"], addr_of))
        .unwrap_or_else(|| JS_REQUESTER.parse().unwrap());
    let responder: SocketAddr = JS_RESPONDER.parse().unwrap();
    let secrets = opt(&input["secretCurrent"], |s| {
        TokenSecrets::from_secrets([0; 32], hex_of(s).try_into().unwrap())
    });
    let token = secrets.as_ref().map(|s| s.token(&requester.ip()));
    let mut res = Response {
        tid: input["tid"].as_u64().unwrap() as u16,
        to: Some(requester),
        token,
        error: input["error"].as_u64().unwrap_or(0),
        value: opt(&input["value"], hex_of),
        ..Response::default()
    };
    let short = name.rsplit('/').next().unwrap();
    match short {
        "ping-ephemeral" | "error-unknown-command" | "error-invalid-token" => {}
        "find-node-closer-nodes" => {
            // The responder's own table decides the order of closer nodes.
            let me = id_of(&input["responderId"]);
            assert_eq!(NodeId::from_addr(&addr_of(&input["responder"])), Some(me));
            let mut table = RoutingTable::new(me);
            for a in input["table"].as_array().unwrap().iter().map(addr_of) {
                table.add(TableNode::new(a, NodeId::from_addr(&a).unwrap()));
            }
            let target = id_of(&input["target"]);
            res.id = Some(me);
            res.closer_nodes = table.closest(&target, K).iter().map(|n| n.addr).collect();
        }
        "lookup-with-token" => {
            res.id = NodeId::from_addr(&responder);
            res.closer_nodes = vec!["10.1.1.1:1001".parse().unwrap()];
        }
        other => panic!("no check for response vector {other}"),
    }
    assert_eq!(
        hex::encode(res.encode().unwrap()),
        hex::encode(bytes),
        "{name}"
    );
    match Message::decode(bytes).unwrap() {
        Message::Response(back) => assert_eq!(back, res, "{name}"),
        Message::Request(_) => panic!("{name} decoded as a request"),
    }
    if let (Some(secret), Some(token)) = (opt(&input["secretCurrent"], hex_of), token) {
        // dht-rpc keys the hash with the secret and hashes the requester's host as text.
        let direct = blake2b_256_keyed(&secret, requester.ip().to_string().as_bytes());
        assert_eq!(direct, token, "{name}");
    }
}
