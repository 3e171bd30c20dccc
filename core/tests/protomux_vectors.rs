//! Protomux frames and blind-relay messages against the bytes JS produced.

mod common;

use common::{bytes, vector};
use hyperswarm::protomux::{self, blind_relay::Pair, Frame, Mux, MuxEvent};

#[test]
fn open_and_close_frames() {
    let v = vector("protomux/open");
    let open = protomux::open(1, "blind-relay", None, &[]);
    assert_eq!(open, bytes(&v["expected"]["bytes"]));
    assert_eq!(
        protomux::decode(&open).unwrap(),
        vec![Frame::Open {
            remote_id: 1,
            protocol: "blind-relay".into(),
            id: None,
            handshake: vec![]
        }]
    );
    let v = vector("protomux/close");
    assert_eq!(protomux::close(1), bytes(&v["expected"]["bytes"]));
}

#[test]
fn pair_and_unpair_messages() {
    let v = vector("protomux/message/blind-relay-pair");
    let i = &v["inputs"];
    let pair = Pair {
        is_initiator: true,
        token: common::arr(&i["token"]),
        id: i["id"].as_u64().unwrap() as u32,
        seq: 0,
    };
    assert_eq!(pair.encode(), bytes(&v["expected"]["messageOnly"]));
    let frame = protomux::message(1, 0, &pair.encode());
    assert_eq!(frame, bytes(&v["expected"]["bytes"]));
    assert_eq!(Pair::decode(&pair.encode()).unwrap(), pair);

    let v = vector("protomux/message/blind-relay-unpair");
    let token = common::arr(&v["inputs"]["token"]);
    let frame = protomux::message(1, 1, &protomux::blind_relay::unpair(&token));
    assert_eq!(frame, bytes(&v["expected"]["bytes"]));
}

#[test]
fn batch_decodes_into_its_messages() {
    let v = vector("protomux/batch");
    let frames = protomux::decode(&bytes(&v["expected"]["bytes"])).unwrap();
    assert_eq!(frames.len(), 2);
    match &frames[0] {
        Frame::Message {
            remote_id: 1,
            kind: 0,
            payload,
        } => assert_eq!(Pair::decode(payload).unwrap().id, 5),
        f => panic!("unexpected {f:?}"),
    }
    assert!(matches!(
        frames[1],
        Frame::Message {
            remote_id: 1,
            kind: 1,
            ..
        }
    ));
}

#[test]
fn mux_pairs_channels_and_rejects_bad_ids() {
    let mut a = Mux::new();
    let mut b = Mux::new();
    let (a_id, a_open, none) = a.open("blind-relay", None, &[]);
    assert!(none.is_none());
    // b has not asked for the channel yet: the OPEN waits, unclaimed.
    let ev = b.receive(&a_open).unwrap();
    assert!(matches!(&ev[..], [MuxEvent::Unclaimed { .. }]));
    let (b_id, b_open, opened) = b.open("blind-relay", None, &[]);
    assert!(matches!(opened, Some(MuxEvent::Opened { local_id, .. }) if local_id == b_id));
    let ev = a.receive(&b_open).unwrap();
    assert!(matches!(&ev[..], [MuxEvent::Opened { local_id, .. }] if *local_id == a_id));
    let ev = b.receive(&protomux::message(a_id, 0, b"hi")).unwrap();
    assert_eq!(
        ev,
        vec![MuxEvent::Message {
            local_id: b_id,
            kind: 0,
            payload: b"hi".to_vec()
        }]
    );
    // Id 0, a reused id and garbage are protocol errors, never panics.
    assert!(b.receive(&protomux::open(0, "x", None, &[])).is_err());
    assert!(b.receive(&protomux::open(a_id, "y", None, &[])).is_err());
    assert!(b.receive(&[0, 9, 9]).is_err());
    assert!(b.receive(&[]).unwrap().is_empty());
}
