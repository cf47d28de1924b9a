use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::event::Event;
use crate::expr::Filter;

fn value(json: &str) -> Value {
    serde_json::from_str(json).expect("test json")
}

fn eval_json(src: &str, json: &str) -> serde_json::Value {
    let e = Expr::compile(src).unwrap_or_else(|e| panic!("{src}: {e}"));
    let v = value(json);
    let ctx = Ctx::new(&v, 1_700_000_000_000.0);
    match e.eval(&ctx).into_value() {
        Some(v) => serde_json::to_value(&v).expect("serialisable"),
        None => serde_json::Value::String("<missing>".into()),
    }
}

const EV: &str = r#"{"status":503,"level":"warn","bytes":"2048","host":"","msg":"  Upstream Timed Out ","tags":["a","b"],"big":9007199254740993,"f":1.5,"n":null,"user":{"first":"Ada","last":"Lovelace"}}"#;

#[test]
fn javascript_values() {
    use serde_json::json;
    let cases = [
        ("status >= 500 ? 'error' : level", json!("error")),
        ("status < 500 ? 'error' : level", json!("warn")),
        ("host || 'unknown'", json!("unknown")),
        ("n ?? 'none'", json!("none")),
        ("host ?? 'none'", json!("")),
        ("missing ?? level", json!("warn")),
        ("user.first + ' ' + user.last", json!("Ada Lovelace")),
        ("'code-' + status", json!("code-503")),
        ("status + 1", json!(504)),
        ("bytes / 1024", json!(2)),
        ("bytes * 1.5", json!(3072)),
        ("Math.round(status / 100)", json!(5)),
        ("Math.round(-2.5)", json!(-2)),
        ("Math.floor(f)", json!(1)),
        ("Math.ceil(f)", json!(2)),
        ("Math.max(1, status, 7)", json!(503)),
        ("Math.min(1, status, -7)", json!(-7)),
        ("Math.abs(-f)", json!(1.5)),
        ("status % 100", json!(3)),
        ("-status", json!(-503)),
        ("1 / 0", json!(null)),
        ("msg.trim()", json!("Upstream Timed Out")),
        ("msg.trim().toLowerCase()", json!("upstream timed out")),
        ("level.toUpperCase()", json!("WARN")),
        ("msg.trim().substring(0, 8)", json!("Upstream")),
        ("msg.trim().slice(-3)", json!("Out")),
        ("msg.replace(/t/gi, '_')", json!("  Ups_ream _imed Ou_ ")),
        ("msg.replace('T', '_')", json!("  Upstream _imed Out ")),
        (
            "msg.replace(/(\\w+) (\\w+)/, '$2 $1')",
            json!("  Timed Upstream Out "),
        ),
        ("msg.trim().split(' ')", json!(["Upstream", "Timed", "Out"])),
        ("msg.indexOf('Timed')", json!(11)),
        ("status.toString()", json!("503")),
        ("parseInt('42px')", json!(42)),
        ("parseInt('0x1f')", json!(31)),
        ("parseFloat('1.25e2ms')", json!(125)),
        ("Number(bytes)", json!(2048)),
        ("String(status)", json!("503")),
        ("Date.now()", json!(1_700_000_000_000i64)),
        ("big", json!(9007199254740993u64)),
        ("tags", json!(["a", "b"])),
        ("'' + tags", json!("a,b")),
        ("tags.includes('b') && level == 'warn'", json!(true)),
        ("exists(user.first) && !exists(user.middle)", json!(true)),
        ("level =~ /^w/ ? 1 : 2", json!(1)),
        ("missing", json!("<missing>")),
        ("missing.toUpperCase()", json!("<missing>")),
        ("missing + 1", json!(null)),
        ("'x' + missing", json!("xundefined")),
    ];
    for (src, want) in cases {
        assert_eq!(eval_json(src, EV), want, "{src}");
    }
}

#[test]
fn text_is_bounded() {
    let big = format!(r#"{{"s":"{}"}}"#, "x".repeat(MAX_TEXT / 2 + 1));
    let e = Expr::compile("s + s").expect("compiles");
    let v = value(&big);
    let ctx = Ctx::new(&v, 0.0);
    assert!(matches!(e.eval(&ctx), Out::Missing));
    assert!(ctx.too_long());
}

#[test]
fn filters_refuse_computation_where_it_is_written() {
    for (src, offset) in [
        ("status / 100 == 5", 7),
        ("a ? b : c", 2),
        ("level.toUpperCase() == 'X'", 6),
        ("-a > 1", 0),
    ] {
        let e = Filter::new(src).expect_err(src);
        assert_eq!(e.offset, offset, "{src}: {e}");
        assert!(e.message.contains("eval"), "{src}: {e}");
        Expr::compile(src).unwrap_or_else(|e| panic!("{src}: {e}"));
    }
}

/// A JSON value of the kinds events carry.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        (-1000i64..1000).prop_map(serde_json::Value::from),
        prop_oneof![Just(0.5), Just(-2.25), Just(1e3)].prop_map(serde_json::Value::from),
        "[a-c0-9 ]{0,4}".prop_map(serde_json::Value::from),
        Just(serde_json::Value::from("5")),
        Just(serde_json::Value::from("a\"b")),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[ab]", inner, 0..3)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn filter_source() -> impl Strategy<Value = String> {
    let field = prop_oneof![Just("a"), Just("b"), Just("a.a"), Just("a[0]"), Just("b.b")];
    let lit = prop_oneof![
        Just("1"),
        Just("5"),
        Just("'5'"),
        Just("'a'"),
        Just("null"),
        Just("true"),
        Just("0.5"),
        Just("'a\"b'"),
    ];
    let op = prop_oneof![
        Just("=="),
        Just("!="),
        Just("==="),
        Just("!=="),
        Just("<"),
        Just(">="),
    ];
    let atom = prop_oneof![
        (field.clone(), op, lit.clone()).prop_map(|(f, o, l)| format!("{f} {o} {l}")),
        field.clone().prop_map(|f| format!("exists({f})")),
        field.clone().prop_map(|f| f.to_string()),
        (field.clone(), lit.clone()).prop_map(|(f, l)| format!("{f} in [{l}, 'b']")),
        field.clone().prop_map(|f| format!("{f} =~ /^[a5]/")),
        field.clone().prop_map(|f| format!("{f}.startsWith('a')")),
        (field, lit).prop_map(|(f, l)| format!("{f}.includes({l})")),
    ];
    atom.prop_recursive(2, 6, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) && ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) || ({b})")),
            inner.prop_map(|a| format!("!({a})")),
        ]
    })
}

proptest! {
    /// A filter answers the same on an event's bytes (the lazy scanner,
    /// as routes read it) and on its parsed value (after a function).
    #[test]
    fn filters_agree_on_bytes_and_values(
        fields in prop::collection::btree_map("[ab]", json_value(), 0..3),
        src in filter_source(),
    ) {
        let object = serde_json::Value::Object(fields.into_iter().collect());
        let raw = serde_json::to_vec(&object).expect("json");
        let filter = Filter::new(&src).expect("generated filters compile");
        let mut scratch = filter.scratch();
        let on_bytes = filter.matches(&Event::json(Bytes::from(raw.clone())), &mut scratch);
        let parsed: Value = serde_json::from_slice(&raw).expect("json");
        let expr = Expr::compile(&src).expect("compiles");
        let on_value = expr.truth(&Ctx::new(&parsed, 0.0));
        prop_assert_eq!(on_bytes, on_value, "{} on {}", src, object);
    }
}
