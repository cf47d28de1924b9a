//! The representative pipeline of the throughput rows, written once for each
//! router that runs it: the event's JSON parsed, three field edits (`env`
//! set, `status_class` computed from `status`, `host` removed), the first
//! eight characters of `msg` masked, and every event whose `seq` ends in 0
//! dropped (10 %), the rest written back as JSON. As sluice's Cribl-style
//! functions, as one VRL program (`remap`), as rsyslog (mmjsonparse,
//! set/unset, a JSON template) and as syslog-ng (json-parser, rewrite, a
//! format-json template). `benches/pipeline.rs` times sluice's two the same way.

use std::net::SocketAddr;
use std::path::Path;

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

/// rsyslog: TCP lines in (imptcp), out to TCP as one JSON line each.
/// Its ruleset gets a queue with two workers, as the sluice rows have two
/// cores; RainerScript has no regex replace, so the mask is a substring.
pub fn rsyslog_config(dir: &Path, input: SocketAddr, output: SocketAddr) -> String {
    format!(
        r#"global(workDirectory="{dir}" maxMessageSize="64k")
module(load="imptcp")
module(load="mmjsonparse")
input(type="imptcp" address="{in_ip}" port="{in_port}" ruleset="pipe")
template(name="json" type="list") {{ property(name="$!all-json-plain") constant(value="\n") }}
ruleset(name="pipe" queue.type="LinkedList" queue.size="100000" queue.workerThreads="2" queue.dequeueBatchSize="1024") {{
  action(type="mmjsonparse" cookie="" useRawMsg="on")
  if re_match($!seq, '0$') then stop
  set $!env = "prod";
  set $!status_class = ($!status / 100) & "xx";
  unset $!host;
  set $!msg = "********" & substring($!msg, 8, 1000000);
  action(type="omfwd" target="{out_ip}" port="{out_port}" protocol="tcp" template="json"
         queue.type="LinkedList" queue.size="100000" queue.dequeueBatchSize="1024")
}}
"#,
        dir = dir.display(),
        in_ip = input.ip(),
        in_port = input.port(),
        out_ip = output.ip(),
        out_port = output.port(),
    )
}

/// syslog-ng: TCP lines in (no syslog parsing), flow control end to end
/// (so nothing is dropped when the output is slower), out to TCP as JSON
/// with `seq` and `status` typed back to numbers.
pub fn syslog_ng_config(input: SocketAddr, output: SocketAddr) -> String {
    format!(
        r#"@version: 3.38
options {{ threaded(yes); stats_level(0); log_fifo_size(100000); }};
source s_in {{ network(ip({in_ip}) port({in_port}) transport(tcp) flags(no-parse) log-iw-size(100000) max-connections(16)); }};
parser p_json {{ json-parser(prefix(".json.")); }};
rewrite r_edit {{
  set("prod" value(".json.env"));
  set("$(/ ${{.json.status}} 100)xx" value(".json.status_class"));
  unset(value(".json.host"));
  subst("^x{{8}}", "********", value(".json.msg"));
}};
filter f_keep {{ not match("0$" value(".json.seq")); }};
destination d_out {{ network("{out_ip}" port({out_port}) transport(tcp)
  template("$(format-json --scope dot-nv-pairs --rekey .json.* --shift 6 --exclude .json.seq --exclude .json.status seq=int64(${{.json.seq}}) status=int64(${{.json.status}}))\n")); }};
log {{ source(s_in); parser(p_json); rewrite(r_edit); filter(f_keep); destination(d_out); flags(flow-control); }};
"#,
        in_ip = input.ip(),
        in_port = input.port(),
        out_ip = output.ip(),
        out_port = output.port(),
    )
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
