//! Apache/nginx access logs, common and combined formats, into Vector's
//! `parse_apache_log` names: `host`, `identity`, `user`, `timestamp`,
//! `message` (the request line), `method`, `path`, `protocol`, `status`,
//! `size`, and for combined `referrer` and `agent`. `-` means absent.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use regex::Regex;
use vrl::value::{KeyString, ObjectMap, Value};

static LINE: LazyLock<Result<Regex, regex::Error>> = LazyLock::new(|| {
    Regex::new(
        r#"^(?P<host>\S+) (?P<identity>\S+) (?P<user>\S+) \[(?P<timestamp>[^\]]+)\] "(?P<request>(?:[^"\\]|\\.)*)" (?P<status>\d{3}|-) (?P<size>\d+|-)(?: "(?P<referrer>(?:[^"\\]|\\.)*)" "(?P<agent>(?:[^"\\]|\\.)*)")?"#,
    )
});

pub fn fields(line: &str) -> Result<ObjectMap, String> {
    let re = LINE.as_ref().map_err(|e| e.to_string())?;
    let c = re
        .captures(line.trim_end())
        .ok_or("not a common or combined log line")?;
    let mut out = ObjectMap::new();
    let mut text = |k: &str, group: &str| {
        if let Some(m) = c.name(group).filter(|m| m.as_str() != "-") {
            out.insert(KeyString::from(k), Value::from(m.as_str()));
        }
    };
    text("host", "host");
    text("identity", "identity");
    text("user", "user");
    text("message", "request");
    text("referrer", "referrer");
    text("agent", "agent");
    let request = c.name("request").map_or("", |m| m.as_str());
    let parts: Vec<&str> = request.split(' ').collect();
    if let [method, path, protocol] = parts[..] {
        out.insert(KeyString::from("method"), Value::from(method));
        out.insert(KeyString::from("path"), Value::from(path));
        out.insert(KeyString::from("protocol"), Value::from(protocol));
    }
    for k in ["status", "size"] {
        if let Some(n) = c.name(k).and_then(|m| m.as_str().parse::<i64>().ok()) {
            out.insert(KeyString::from(k), Value::Integer(n));
        }
    }
    let stamp = c.name("timestamp").map_or("", |m| m.as_str());
    let t = DateTime::parse_from_str(stamp, "%d/%b/%Y:%H:%M:%S %z")
        .map_err(|e| format!("timestamp `{stamp}`: {e}"))?;
    out.insert(
        KeyString::from("timestamp"),
        Value::Timestamp(t.with_timezone(&Utc)),
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_and_combined() {
        let f = fields(r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326"#)
            .expect("common");
        assert_eq!(f["host"], Value::from("127.0.0.1"));
        assert_eq!(f["user"], Value::from("frank"));
        assert!(!f.contains_key("identity"));
        assert_eq!(f["method"], Value::from("GET"));
        assert_eq!(f["path"], Value::from("/apache_pb.gif"));
        assert_eq!(f["status"], Value::Integer(200));
        assert_eq!(f["size"], Value::Integer(2326));
        let Value::Timestamp(t) = &f["timestamp"] else {
            panic!("timestamp");
        };
        assert_eq!(t.to_rfc3339(), "2000-10-10T20:55:36+00:00");
        let nginx = fields(r#"192.168.1.5 - - [06/Dec/2026:10:00:00 +0000] "GET /health HTTP/1.1" 200 2 "-" "kube-probe/1.29""#)
            .expect("combined");
        assert_eq!(nginx["agent"], Value::from("kube-probe/1.29"));
        assert!(!nginx.contains_key("referrer"));
        assert!(fields("GET / 200").is_err());
    }
}
