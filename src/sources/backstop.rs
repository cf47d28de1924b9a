//! Backstop-compatible endpoints on the HTTP source (`backstop:`), so a
//! Backstop user swaps it for sluice and keeps every Graphite dashboard.
//!
//! Each metric becomes one event `{"metric": NAME, "value": VALUE,
//! "measure_time": TIME}` with the name, value and time Backstop itself
//! writes to Carbon (a graphite destination with `metric: {name: metric,
//! value: value, timestamp: measure_time}` writes the same line):
//!
//! - `POST /publish/<prefix>`: one `{metric, value, measure_time}` object
//!   or an array of them, for prefixes in `prefixes`: `<prefix>.<metric>`.
//! - `POST /collectd`: collectd's write_http JSON. The host (`DOT` and
//!   `DASH` spelled out allowed) splits into cloud, slot and id:
//!   `mitt.<cloud with . as ->.<slot>.<id>.<metric>`, the metric named by
//!   Backstop's per-plugin rules (`names_for`), others by its generic rule
//!   `<type>[.<type_instance>]`.
//! - `POST /github` (form field `payload`): one value-1 point per commit,
//!   `github.<repo>.<ref, / as .>.<author email, . and @ as ->.<commit id>`.
//! - `POST /pagerduty` (a form, Rack-style nested keys): `alerts.pingdom.…`,
//!   `alerts.nagios.<host>.<service or host_down>` or
//!   `alerts.enterprise.zendesk.<service id>`, value 1.
//! - `api_key` is prepended to every name, as Backstop does for Hosted
//!   Graphite; `users` (`user:password` pairs) turn on basic auth.
//!
//! Answers are Backstop's: `200 ok`; `400 JSON is required`, `400 missing
//! fields`, `400 unknown alert`, `404 unknown prefix`; `401 Not authorized`.
//! Unlike Backstop, a request is taken whole or not at all: Backstop writes
//! the metrics before the first bad one and then answers 400, sluice checks
//! them all first. Where Backstop fails with a 500 on input it does not
//! expect (a host with fewer than two dots' worth of parts, a missing
//! `ref`), sluice answers `400 missing fields`.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::event::Event;

/// `backstop:` on an HTTP source.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackstopConfig {
    /// The prefixes `/publish/<prefix>` accepts (Backstop's `PREFIXES`).
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// Prepended to every metric name with a dot (Backstop's `API_KEY`).
    #[serde(default)]
    pub api_key: Option<String>,
    /// `user:password` pairs for basic auth (Backstop's `BACKSTOP_AUTH`);
    /// none: open.
    #[serde(default)]
    pub users: Vec<String>,
}

impl BackstopConfig {
    pub fn validate(&self) -> Result<(), String> {
        for p in &self.prefixes {
            if p.is_empty() || p.contains(['/', ' ']) {
                return Err(format!("backstop.prefixes: `{p}` is not a prefix"));
            }
        }
        for u in &self.users {
            if !u.contains(':') {
                return Err("backstop.users: each entry is `user:password`".into());
            }
        }
        Ok(())
    }
}

/// A refusal, worded and coded as Backstop words and codes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    JsonRequired,
    MissingFields,
    UnknownPrefix,
    UnknownAlert,
}

impl Refusal {
    pub fn status(self) -> u16 {
        match self {
            Refusal::UnknownPrefix => 404,
            _ => 400,
        }
    }

    pub fn body(self) -> &'static str {
        match self {
            Refusal::JsonRequired => "JSON is required",
            Refusal::MissingFields => "missing fields",
            Refusal::UnknownPrefix => "unknown prefix",
            Refusal::UnknownAlert => "unknown alert",
        }
    }
}

/// One metric point.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: String,
    pub value: Value,
    pub time: Value,
}

impl Metric {
    /// Its event, the name under `api_key`.
    pub fn event(&self, api_key: Option<&str>) -> Event {
        let name = match api_key {
            Some(k) => format!("{k}.{}", self.name),
            None => self.name.clone(),
        };
        let v =
            serde_json::json!({ "metric": name, "value": self.value, "measure_time": self.time });
        Event::json(v.to_string().into())
    }
}

/// Ruby's truthiness, which Backstop's "missing fields" checks use: only
/// absent, `null` and `false` fail (0 and "" pass).
fn present(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !matches!(v, Value::Null | Value::Bool(false)))
}

/// How Ruby's `to_s` writes a JSON value into a name.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn json(body: &[u8]) -> Result<Value, Refusal> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ (Value::Object(_) | Value::Array(_))) => Ok(v),
        _ => Err(Refusal::JsonRequired),
    }
}

/// `POST /publish/<prefix>`.
pub fn publish(prefixes: &[String], prefix: &str, body: &[u8]) -> Result<Vec<Metric>, Refusal> {
    let data = json(body)?;
    if !prefixes.iter().any(|p| p == prefix) {
        return Err(Refusal::UnknownPrefix);
    }
    let items = match data {
        Value::Array(items) => items,
        one => vec![one],
    };
    items
        .iter()
        .map(|item| {
            let (Some(metric), Some(value), Some(time)) = (
                present(item.get("metric")),
                present(item.get("value")),
                present(item.get("measure_time")),
            ) else {
                return Err(Refusal::MissingFields);
            };
            Ok(Metric {
                name: format!("{prefix}.{}", text(metric)),
                value: value.clone(),
                time: time.clone(),
            })
        })
        .collect()
}

/// `POST /collectd`: write_http's JSON, an array of value lists.
pub fn collectd(body: &[u8]) -> Result<Vec<Metric>, Refusal> {
    let Value::Array(lists) = json(body)? else {
        // Backstop iterates the body; an object is not a list of lists.
        return Err(Refusal::MissingFields);
    };
    let mut out = Vec::new();
    for list in &lists {
        let Value::Object(d) = list else {
            return Err(Refusal::MissingFields);
        };
        let (cloud, slot, id) = host_parts(d.get("host")).ok_or(Refusal::MissingFields)?;
        let time = present(d.get("time")).ok_or(Refusal::MissingFields)?;
        for (metric, value) in names_for(d) {
            let value = present(value).ok_or(Refusal::MissingFields)?;
            out.push(Metric {
                name: format!("mitt.{cloud}.{slot}.{id}.{metric}"),
                value: value.clone(),
                time: time.clone(),
            });
        }
    }
    Ok(out)
}

/// The host as cloud (dots made dashes), slot and id: its last two parts
/// are the slot and the id, the rest the cloud.
fn host_parts(host: Option<&Value>) -> Option<(String, String, String)> {
    let host = host?.as_str()?.replace("DOT", ".").replace("DASH", "-");
    let mut parts: Vec<&str> = host.split('.').collect();
    // Ruby's split drops trailing empty parts.
    while parts.last() == Some(&"") {
        parts.pop();
    }
    if parts.len() < 2 {
        return None;
    }
    let id = parts[parts.len() - 1];
    let slot = parts[parts.len() - 2];
    let cloud = parts[..parts.len() - 2].join(".").replace('.', "-");
    Some((cloud, slot.to_string(), id.to_string()))
}

/// Backstop's per-plugin names for one value list, with the value each
/// takes (`None` where the list has no such value: "missing fields").
fn names_for(d: &Map<String, Value>) -> Vec<(String, Option<&Value>)> {
    let s = |k: &str| d.get(k).map(text).unwrap_or_default();
    let v = |i: usize| d.get("values").and_then(|v| v.get(i));
    let (plugin, pi, ty, ti) = (
        s("plugin"),
        s("plugin_instance"),
        s("type"),
        s("type_instance"),
    );
    match plugin.as_str() {
        "cpu" => vec![(format!("cpu.{pi}.{ti}"), v(0))],
        "df" => vec![
            (format!("df.{ti}.used"), v(0)),
            (format!("df.{ti}.free"), v(1)),
        ],
        "disk" => vec![
            (format!("disk.{pi}.{ty}.write"), v(0)),
            (format!("disk.{pi}.{ty}.read"), v(1)),
        ],
        "interface" => vec![
            (format!("net.{ti}.{ty}.in"), v(0)),
            (format!("net.{ti}.{ty}.out"), v(1)),
        ],
        "load" => vec![
            ("load.1m".into(), v(0)),
            ("load.5m".into(), v(1)),
            ("load.15m".into(), v(2)),
        ],
        "memory" => vec![(format!("memory.{ti}"), v(0))],
        "swap" => vec![(format!("swap.{ti}"), v(0))],
        "conntrack" => vec![("conntrack.connections".into(), v(0))],
        "droid" => vec![(format!("droid.{ti}"), v(0))],
        "fsperformance" | "nfsiostat" => vec![(format!("{plugin}.{pi}.{ti}"), v(0))],
        "processes" if !pi.is_empty() => {
            let pair = match ty.as_str() {
                "ps_count" => Some(("num_proc", "num_thread")),
                "ps_disk_ops" | "ps_disk_octets" => Some(("read", "write")),
                "ps_pagefaults" => Some(("minor", "major")),
                "ps_cputime" => Some(("user", "system")),
                _ => None,
            };
            match pair {
                Some((a, b)) => vec![
                    (format!("processes.{pi}.{ty}.{a}"), v(0)),
                    (format!("processes.{pi}.{ty}.{b}"), v(1)),
                ],
                None => vec![(format!("processes.{pi}.{ty}"), v(0))],
            }
        }
        "processes" if ti.is_empty() => vec![(format!("processes.{ty}"), v(0))],
        "processes" => vec![(format!("processes.{ti}"), v(0))],
        _ if ti.is_empty() => vec![(ty, v(0))],
        _ => vec![(format!("{ty}.{ti}"), v(0))],
    }
}

/// `POST /github`: the push webhook's form field `payload`.
pub fn github(form: &[u8]) -> Result<Vec<Metric>, Refusal> {
    let payload = form_urlencoded::parse(form)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned())
        .ok_or(Refusal::JsonRequired)?;
    let data = json(payload.as_bytes())?;
    let (Some(repo), Some(commits)) = (
        present(data.get("repository")),
        present(data.get("commits")),
    ) else {
        return Err(Refusal::MissingFields);
    };
    let git_ref = data
        .get("ref")
        .and_then(Value::as_str)
        .ok_or(Refusal::MissingFields)?
        .replace('/', ".");
    let repo = repo.get("name").map(text).unwrap_or_default();
    let commits = commits.as_array().ok_or(Refusal::MissingFields)?;
    commits
        .iter()
        .map(|c| {
            let author = c
                .get("author")
                .and_then(|a| a.get("email"))
                .and_then(Value::as_str)
                .ok_or(Refusal::MissingFields)?
                .replace(['.', '@'], "-");
            let time = c
                .get("timestamp")
                .and_then(Value::as_str)
                .and_then(epoch)
                .ok_or(Refusal::MissingFields)?;
            let id = c.get("id").map(text).unwrap_or_default();
            Ok(Metric {
                name: format!("github.{repo}.{git_ref}.{author}.{id}"),
                value: Value::from(1),
                time: Value::from(time),
            })
        })
        .collect()
}

/// `POST /pagerduty`: an incident as a form with Rack-style nested keys
/// (`service[name]=nagios&trigger_summary_data[HOSTNAME]=…`).
pub fn pagerduty(form: &[u8]) -> Result<Vec<Metric>, Refusal> {
    let incident = nested_form(form);
    let get = |path: &[&str]| {
        path.iter()
            .try_fold(&incident, |v, k| v.get(*k))
            .and_then(Value::as_str)
    };
    let metric = match get(&["service", "name"]) {
        Some("Pingdom") => {
            let key = get(&["incident_key"]).ok_or(Refusal::UnknownAlert)?;
            let key = key.replace('.', "_").replace(['(', ')'], "");
            format!("pingdom.{}", ruby_whitespace().replace_all(&key, "."))
        }
        Some("nagios") => {
            let host = get(&["trigger_summary_data", "HOSTNAME"]).ok_or(Refusal::UnknownAlert)?;
            let outage = match get(&["trigger_summary_data", "SERVICEDESC"]) {
                Some("") => "host_down",
                Some(s) => s,
                None => "",
            };
            format!("nagios.{}.{outage}", host.replace('.', "_"))
        }
        Some("Enterprise Zendesk") => {
            format!(
                "enterprise.zendesk.{}",
                get(&["service", "id"]).unwrap_or("")
            )
        }
        _ => return Err(Refusal::UnknownAlert),
    };
    let time = get(&["created_on"])
        .and_then(epoch)
        .ok_or(Refusal::MissingFields)?;
    Ok(vec![Metric {
        name: format!("alerts.{metric}"),
        value: Value::from(1),
        time: Value::from(time),
    }])
}

/// Ruby's `\s+`.
fn ruby_whitespace() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(r"[ \t\r\n\x0b\x0c]+").expect("a constant, valid regex"))
}

/// Seconds since the epoch of an ISO 8601 time with an offset.
fn epoch(t: &str) -> Option<i64> {
    t.trim()
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|ts| ts.as_second())
}

/// A form body as a JSON object, `a[b][c]=v` nested as Rack nests it.
fn nested_form(form: &[u8]) -> Value {
    let mut root = Value::Object(Map::new());
    for (key, value) in form_urlencoded::parse(form) {
        let mut path: Vec<&str> = Vec::new();
        let (head, mut rest) = key.split_once('[').map_or((&key[..], ""), |(h, r)| (h, r));
        path.push(head);
        while let Some((inner, after)) = rest.split_once(']') {
            path.push(inner);
            rest = after.strip_prefix('[').unwrap_or("");
        }
        let mut at = &mut root;
        for (i, k) in path.iter().enumerate() {
            let Value::Object(map) = at else { break };
            if i + 1 == path.len() {
                map.insert((*k).to_string(), Value::from(value.as_ref()));
                break;
            }
            at = map
                .entry((*k).to_string())
                .or_insert_with(|| Value::Object(Map::new()));
        }
    }
    root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(m: &[Metric]) -> Vec<&str> {
        m.iter().map(|m| m.name.as_str()).collect()
    }

    #[test]
    fn publish_as_backstop_names_and_refuses_it() {
        let prefixes = vec!["custom".to_string(), "note".to_string()];
        let one = publish(
            &prefixes,
            "custom",
            br#"{"metric":"a.b","value":3,"measure_time":1700000000}"#,
        )
        .unwrap();
        assert_eq!(
            one,
            vec![Metric {
                name: "custom.a.b".into(),
                value: 3.into(),
                time: 1700000000.into()
            }]
        );
        let many = publish(&prefixes, "note", br#"[{"metric":"rel","value":"v214","measure_time":1},{"metric":"x","value":0,"measure_time":"2"}]"#).unwrap();
        assert_eq!(names(&many), ["note.rel", "note.x"]);
        assert_eq!(
            publish(&prefixes, "other", b"[]"),
            Err(Refusal::UnknownPrefix)
        );
        assert_eq!(
            publish(&prefixes, "custom", b"not json"),
            Err(Refusal::JsonRequired)
        );
        // JSON is checked before the prefix, as Backstop does.
        assert_eq!(
            publish(&prefixes, "other", b"nope"),
            Err(Refusal::JsonRequired)
        );
        assert_eq!(
            publish(&prefixes, "custom", br#"{"metric":"a","value":1}"#),
            Err(Refusal::MissingFields)
        );
        assert_eq!(
            publish(
                &prefixes,
                "custom",
                br#"[{"metric":"a","value":null,"measure_time":1}]"#
            ),
            Err(Refusal::MissingFields)
        );
    }

    fn list(host: &str, plugin: &str, pi: &str, ty: &str, ti: &str, values: &[f64]) -> Value {
        serde_json::json!({"host": host, "plugin": plugin, "plugin_instance": pi, "type": ty,
            "type_instance": ti, "values": values, "time": 1365206103.5, "interval": 10.0})
    }

    #[test]
    fn collectd_names_follow_backstops_plugins() {
        let body = Value::Array(vec![
            list(
                "prodDOTuseast.rack7.web1",
                "load",
                "",
                "load",
                "",
                &[0.1, 0.2, 0.3],
            ),
            list("a.b.c.d", "cpu", "0", "cpu", "idle", &[99.0]),
            list("a.b.c", "memory", "", "memory", "used", &[1.0]),
            list("a.b.c", "interface", "eth0", "if_octets", "", &[1.0, 2.0]),
            list("a.b.c", "df", "root", "df_complex", "used", &[5.0, 6.0]),
            list("a.b.c", "processes", "sshd", "ps_count", "", &[1.0, 2.0]),
            list("a.b.c", "processes", "", "fork_rate", "", &[3.0]),
            list("a.b.c", "processes", "", "ps_state", "running", &[4.0]),
            list("a.b.c", "entropy", "", "entropy", "", &[7.0]),
            list(
                "a.b.c",
                "tcpconns",
                "80-local",
                "tcp_connections",
                "LISTEN",
                &[8.0],
            ),
        ]);
        let m = collectd(body.to_string().as_bytes()).unwrap();
        assert_eq!(
            names(&m),
            [
                "mitt.prod-useast.rack7.web1.load.1m",
                "mitt.prod-useast.rack7.web1.load.5m",
                "mitt.prod-useast.rack7.web1.load.15m",
                "mitt.a-b.c.d.cpu.0.idle",
                "mitt.a.b.c.memory.used",
                "mitt.a.b.c.net..if_octets.in",
                "mitt.a.b.c.net..if_octets.out",
                "mitt.a.b.c.df.used.used",
                "mitt.a.b.c.df.used.free",
                "mitt.a.b.c.processes.sshd.ps_count.num_proc",
                "mitt.a.b.c.processes.sshd.ps_count.num_thread",
                "mitt.a.b.c.processes.fork_rate",
                "mitt.a.b.c.processes.running",
                "mitt.a.b.c.entropy",
                "mitt.a.b.c.tcp_connections.LISTEN",
            ]
        );
        assert_eq!(m[1].value, Value::from(0.2));
        assert_eq!(m[0].time, Value::from(1365206103.5));
        // A single-value df list has no `free`: Backstop refuses the request.
        let df = Value::Array(vec![list(
            "a.b.c",
            "df",
            "root",
            "df_complex",
            "used",
            &[5.0],
        )]);
        assert_eq!(
            collectd(df.to_string().as_bytes()),
            Err(Refusal::MissingFields)
        );
        let short = Value::Array(vec![list(
            "localhost",
            "load",
            "",
            "load",
            "",
            &[1.0, 1.0, 1.0],
        )]);
        assert_eq!(
            collectd(short.to_string().as_bytes()),
            Err(Refusal::MissingFields)
        );
        assert_eq!(collectd(b"{"), Err(Refusal::JsonRequired));
    }

    #[test]
    fn github_and_pagerduty_are_value_1_annotations() {
        let payload = serde_json::json!({
            "ref": "refs/heads/master",
            "repository": {"name": "project"},
            "commits": [{"id": "10af2cb0", "timestamp": "2008-02-15T14:57:17-08:00",
                         "author": {"email": "bob@example.com"}}],
        });
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &payload.to_string())
            .finish();
        let m = github(form.as_bytes()).unwrap();
        assert_eq!(
            names(&m),
            ["github.project.refs.heads.master.bob-example-com.10af2cb0"]
        );
        assert_eq!(
            (m[0].value.clone(), m[0].time.clone()),
            (1.into(), 1203116237.into())
        );
        assert_eq!(github(b"payload=%7B"), Err(Refusal::JsonRequired));
        assert_eq!(github(b"payload=%7B%7D"), Err(Refusal::MissingFields));

        let nagios = b"service%5Bname%5D=nagios&trigger_summary_data%5BHOSTNAME%5D=web1.example&trigger_summary_data%5BSERVICEDESC%5D=diskspace&created_on=2013-04-05T23%3A55%3A03Z";
        let m = pagerduty(nagios).unwrap();
        assert_eq!(names(&m), ["alerts.nagios.web1_example.diskspace"]);
        assert_eq!(m[0].time, Value::from(1365206103));
        let down = b"service[name]=nagios&trigger_summary_data[HOSTNAME]=db&trigger_summary_data[SERVICEDESC]=&created_on=2013-04-05T23:55:03Z";
        assert_eq!(
            names(&pagerduty(down).unwrap()),
            ["alerts.nagios.db.host_down"]
        );
        let pingdom = b"service[name]=Pingdom&incident_key=web1.example.com+(HTTP)+check&created_on=2013-04-05T23:55:03Z";
        assert_eq!(
            names(&pagerduty(pingdom).unwrap()),
            ["alerts.pingdom.web1_example_com.HTTP.check"]
        );
        let zendesk =
            b"service[name]=Enterprise+Zendesk&service[id]=PX1&created_on=2013-04-05T23:55:03Z";
        assert_eq!(
            names(&pagerduty(zendesk).unwrap()),
            ["alerts.enterprise.zendesk.PX1"]
        );
        assert_eq!(
            pagerduty(b"service[name]=other"),
            Err(Refusal::UnknownAlert)
        );
    }

    #[test]
    fn the_api_key_goes_first() {
        let m = Metric {
            name: "custom.a".into(),
            value: 1.into(),
            time: 2.into(),
        };
        let e = m.event(Some("abc123"));
        let v: Value = serde_json::from_slice(&e.raw).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"metric": "abc123.custom.a", "value": 1, "measure_time": 2})
        );
    }
}
