//! The representative pipeline of the throughput rows, written once for each
//! router that runs it: the event's JSON parsed, three field edits (`env`
//! set, `status_class` computed from `status`, `host` removed), the first
//! eight characters of `msg` masked, and every event whose `seq` ends in 0
//! dropped (10 %), the rest written back as JSON. As sluice's Cribl-style
//! functions, as one VRL program (`remap`), as rsyslog (mmjsonparse,
//! set/unset, a JSON template) and as syslog-ng (json-parser, rewrite, a
//! format-json template): their configurations are
//! `loadtest/peers/*-representative.conf`. `benches/pipeline.rs` times
//! sluice's two the same way.

use serde_json::{Value, json};

/// The events the pipeline keeps out of `sent`, sent as blocks of `batch`
/// events numbered from 0 (as the throughput generator repeats one block):
/// those whose number ends in 0 are dropped.
pub fn kept(sent: u64, batch: u64) -> u64 {
    let batch = batch.max(1);
    let dropped = sent / batch * batch.div_ceil(10) + (sent % batch).div_ceil(10);
    sent - dropped
}

/// sluice's Cribl-style functions.
pub fn cribl() -> Value {
    json!([
        {
            "type": "eval",
            "set": {
                "env": "'prod'",
                "status_class": "Math.floor(status / 100) + 'xx'",
            },
            "remove": ["host"],
        },
        { "type": "mask", "field": "msg", "pattern": "^x{8}", "replace": "********" },
        { "type": "drop", "filter": "seq =~ /0$/" },
    ])
}

/// The same as one VRL program.
pub fn remap() -> Value {
    json!([{
        "type": "remap",
        "source": r#".env = "prod"
.status_class = to_string(to_int(floor(to_int!(.status) / 100))) + "xx"
del(.host)
.msg = replace(string!(.msg), r'^x{8}', "********")
if mod(to_int!(.seq), 10) == 0 { abort }
"#,
    }])
}

#[cfg(test)]
mod tests {
    use super::kept;

    #[test]
    fn a_tenth_of_each_block_is_dropped() {
        // Ids 0..512: 0, 10, ..., 510 end in 0.
        assert_eq!(kept(512, 512), 460);
        assert_eq!(kept(1024, 512), 920);
        assert_eq!(kept(5, 512), 4);
        assert_eq!(kept(0, 512), 0);
    }
}
