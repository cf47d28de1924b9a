//! The books of a whole pipeline, against a model; and how the functions'
//! own tests run one function on JSON events.

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::event::Event;

/// Run `f` on JSON `events`: what came out, as JSON, and its tally.
pub(super) fn run_json<S: AsRef<str>>(
    f: &dyn Function,
    events: &[S],
) -> (Vec<serde_json::Value>, Tally) {
    let batch = events
        .iter()
        .map(|e| Work::Raw(Event::json(Bytes::copy_from_slice(e.as_ref().as_bytes()))))
        .collect();
    let mut out = Vec::new();
    let mut tally = Tally::default();
    f.run(batch, &mut out, &mut tally);
    let values = out
        .into_iter()
        .map(|w| {
            let e = w.into_event().expect("writable");
            serde_json::from_slice(&e.raw).expect("json")
        })
        .collect();
    (values, tally)
}

fn pipeline(metrics: &Metrics) -> Arc<Pipeline> {
    let config: PipelineConfig = vec![
        FunctionConfig::Drop(drop::DropConfig {
            kind: "drop".into(),
            name: None,
            filter: r#"level == "debug""#.into(),
        }),
        FunctionConfig::Unroll(unroll::UnrollConfig {
            kind: "unroll".into(),
            name: None,
            field: "items".into(),
            target: Some("item".into()),
        }),
        FunctionConfig::Rename(rename::RenameConfig {
            kind: "rename".into(),
            name: None,
            fields: [("item".to_string(), "element".to_string())].into(),
        }),
    ];
    Pipeline::build("p", &config, metrics, Arc::default(), &Default::default()).expect("builds")
}

fn counter(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

proptest! {
    /// Whatever the events, what comes out is what the model says, and
    /// received + emitted = sent + dropped.
    #[test]
    fn books_balance(events in prop::collection::vec((any::<bool>(), 0usize..4, any::<bool>()), 0..40)) {
        let metrics = Metrics::new();
        let p = pipeline(&metrics);
        let mut want = Vec::new();
        let input: Vec<Event> = events
            .iter()
            .enumerate()
            .map(|(i, &(debug, items, text))| {
                if text {
                    want.push(serde_json::json!({ "message": format!("line {i}") }));
                    return Event::text(Bytes::from(format!("line {i}")));
                }
                let level = if debug { "debug" } else { "info" };
                let list: Vec<usize> = (0..items).collect();
                if !debug {
                    for x in &list {
                        want.push(serde_json::json!({ "i": i, "level": level, "element": x }));
                    }
                }
                Event::json(Bytes::from(serde_json::json!({ "i": i, "level": level, "items": list }).to_string()))
            })
            .collect();
        let out = p.process(input);
        let got: Vec<serde_json::Value> = out.iter().map(|e| serde_json::from_slice(&e.raw).expect("json")).collect();
        prop_assert_eq!(got, want);
        let text = metrics.encode();
        let received = counter(&text, "sluice_pipeline_received_events_total");
        let sent = counter(&text, "sluice_pipeline_sent_events_total");
        let dropped = counter(&text, "sluice_pipeline_dropped_events_total");
        let emitted = counter(&text, "sluice_pipeline_emitted_events_total");
        prop_assert_eq!(received as usize, events.len());
        prop_assert_eq!(sent as usize, out.len());
        prop_assert_eq!(received + emitted, sent + dropped);
    }
}

#[test]
fn labels_name_repeated_functions_apart() {
    let mask = |name: Option<&str>| {
        FunctionConfig::Mask(mask::MaskConfig {
            kind: "mask".into(),
            name: name.map(str::to_string),
            field: None,
            pattern: "x".into(),
            replace: None,
            hash: None,
        })
    };
    let labels = config::labels(&vec![mask(None), mask(None), mask(Some("cards"))]);
    assert_eq!(labels, ["mask", "mask_2", "cards"]);
}

/// Strings read from JSON are VRL's checked UTF-8 strings, not bytes:
/// functions that read text must take both.
#[test]
fn json_strings_are_masked_and_parsed() {
    let config: PipelineConfig = vec![
        FunctionConfig::Mask(mask::MaskConfig {
            kind: "mask".into(),
            name: None,
            field: Some("message".into()),
            pattern: r"\d{13,16}".into(),
            replace: Some("<card>".into()),
            hash: None,
        }),
        FunctionConfig::Parse(parse::ParseConfig {
            kind: "parse".into(),
            name: None,
            field: "kv".into(),
            format: parse::Format::Kv,
            target: None,
            pattern: None,
            columns: Vec::new(),
            delimiter: None,
            separator: None,
            remove_field: true,
            drop_on_error: false,
        }),
    ];
    let p = Pipeline::build(
        "p",
        &config,
        &Metrics::new(),
        Arc::default(),
        &Default::default(),
    )
    .expect("builds");
    let out = p.process(vec![Event::json(Bytes::from_static(
        br#"{"message":"paid with 4111111111111111 ok","kv":"a=1 b=two"}"#,
    ))]);
    let got: serde_json::Value = serde_json::from_slice(&out[0].raw).expect("json");
    assert_eq!(
        got,
        serde_json::json!({"message": "paid with <card> ok", "a": "1", "b": "two"})
    );
}

/// What a function releases later (an aggregate's window) goes through the
/// functions after it, and is counted there even when none of it comes out.
#[test]
fn released_events_are_counted_by_the_functions_after_them() {
    let metrics = Metrics::new();
    let config: PipelineConfig = vec![
        FunctionConfig::Aggregate(
            serde_saphyr::from_str(
                "{type: aggregate, window: 1h, metrics: [{name: n, type: count}]}",
            )
            .expect("aggregate"),
        ),
        FunctionConfig::Drop(drop::DropConfig {
            kind: "drop".into(),
            name: None,
            filter: r#"name == "n""#.into(),
        }),
    ];
    let p = Pipeline::build("p", &config, &metrics, Arc::default(), &Default::default())
        .expect("builds");
    let events = (0..5)
        .map(|i| Event::json(Bytes::from(format!(r#"{{"i":{i}}}"#))))
        .collect();
    assert!(p.process(events).is_empty(), "the hour is not over");
    assert!(p.flush(Flush::All).is_empty(), "the drop removes the count");
    let text = metrics.encode();
    let emitted = counter(&text, "sluice_pipeline_emitted_events_total");
    let dropped = counter(&text, "sluice_pipeline_dropped_events_total");
    assert_eq!(
        (emitted, dropped),
        (1, 6),
        "5 folded and the metric dropped"
    );
    assert_eq!(
        counter(&text, "sluice_pipeline_received_events_total") + emitted,
        dropped
    );
}
