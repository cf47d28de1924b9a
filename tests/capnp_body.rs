//! `encoding: capnp` over HTTP: a receiver decodes each request body with
//! the `capnp` crate's reader and the code generated from
//! `proto/sluice/v1/events.capnp`, and finds every event, fields intact.

mod common;

use std::time::Duration;

use common::receiver::Receiver;
use common::{Sluice, runtime, send_lines, wait_until};
use sluice::codec::capnp::events_capnp::{batch, event, value};

/// The `seq`, `host` and `tags` of a JSON event, read from the tree.
fn fields(v: value::Reader<'_>) -> (i64, String, Vec<String>) {
    let value::Object(members) = v.which().unwrap() else {
        panic!("not an object");
    };
    let (mut seq, mut host, mut tags) = (-1, String::new(), Vec::new());
    for m in members.unwrap() {
        let name = m.get_name().unwrap().to_str().unwrap().to_string();
        let v = m.get_value().unwrap();
        match (name.as_str(), v.which().unwrap()) {
            ("seq", value::Int(i)) => seq = i,
            ("host", value::Text(t)) => host = t.unwrap().to_string().unwrap(),
            ("tags", value::List(l)) => {
                for t in l.unwrap() {
                    if let value::Text(t) = t.which().unwrap() {
                        tags.push(t.unwrap().to_string().unwrap());
                    }
                }
            }
            other => panic!("unexpected member {}", other.0),
        }
    }
    (seq, host, tags)
}

#[test]
fn a_receiver_decodes_every_event_with_the_capnp_reader() {
    let rt = runtime();
    let rx = rt.block_on(Receiver::start());
    let s = Sluice::start(&format!(
        "api: {{ address: 127.0.0.1:0 }}\nsources:\n  in: {{ type: tcp, address: 127.0.0.1:0 }}\nroutes:\n  - name: all\n    destination: out\ndestinations:\n  out:\n    type: http\n    url: \"{}\"\n    encoding: capnp\n    compression: gzip\n    batch: {{ max_events: 100, timeout: 50ms }}\n",
        rx.url("/capnp")
    ));
    let n = 1000;
    send_lines(
        &s,
        "in",
        (0..n).map(|i| format!(r#"{{"seq":{i},"host":"web-{}","tags":["a","b"]}}"#, i % 3)),
    );
    send_lines(
        &s,
        "in",
        std::iter::once("not json, a line of text".to_string()),
    );
    let decoded = || {
        let mut json = Vec::new();
        let mut text = Vec::new();
        for r in rx.requests() {
            assert_eq!(r.content_type.as_deref(), Some("application/x-capnp"));
            let msg = capnp::serialize::read_message(
                &mut &r.body[..],
                capnp::message::ReaderOptions::new(),
            )
            .expect("a Cap'n Proto message");
            for e in msg
                .get_root::<batch::Reader>()
                .unwrap()
                .get_events()
                .unwrap()
            {
                match e.which().unwrap() {
                    event::Json(v) => json.push(fields(v.unwrap())),
                    event::Text(t) => text.push(t.unwrap().to_vec()),
                }
            }
        }
        (json, text)
    };
    wait_until(
        "every event at the receiver",
        Duration::from_secs(30),
        || {
            let (json, text) = decoded();
            json.len() == n && text.len() == 1
        },
    );
    let (mut json, text) = decoded();
    // Requests run concurrently: arrival order is not event order.
    json.sort();
    for (i, (seq, host, tags)) in json.iter().enumerate() {
        assert_eq!(*seq, i as i64);
        assert_eq!(host, &format!("web-{}", i % 3));
        assert_eq!(tags, &["a", "b"]);
    }
    assert_eq!(text, vec![b"not json, a line of text".to_vec()]);
    assert!(
        rx.requests()
            .iter()
            .all(|r| r.content_encoding.as_deref() == Some("gzip"))
    );
}
