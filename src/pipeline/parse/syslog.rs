//! Syslog lines (read by `crate::syslog`) into Vector's field names:
//! `message`, `hostname`, `appname`, `procid`, `msgid`, `facility` and
//! `severity` (by name), `timestamp`, `version` (5424), and each structured
//! data element as an object of its parameters.

use chrono::Utc;
use syslog_loose::{ProcId, Protocol};
use vrl::value::{KeyString, ObjectMap, Value};

pub fn fields(line: &str) -> Result<ObjectMap, String> {
    let m = crate::syslog::message(line).ok_or_else(|| "not a syslog message".to_string())?;
    let mut out = ObjectMap::new();
    let mut put = |k: &str, v: Value| {
        out.insert(KeyString::from(k), v);
    };
    put("message", Value::from(m.msg));
    if let Some(h) = m.hostname {
        put("hostname", Value::from(h));
    }
    if let Some(a) = m.appname {
        put("appname", Value::from(a));
    }
    match m.procid {
        Some(ProcId::PID(p)) => put("procid", Value::Integer(i64::from(p))),
        Some(ProcId::Name(n)) => put("procid", Value::from(n)),
        None => {}
    }
    if let Some(id) = m.msgid {
        put("msgid", Value::from(id));
    }
    if let Some(f) = m.facility {
        put("facility", Value::from(f.as_str()));
    }
    if let Some(s) = m.severity {
        put("severity", Value::from(s.as_str()));
    }
    if let Some(t) = m.timestamp {
        put("timestamp", Value::Timestamp(t.with_timezone(&Utc)));
    }
    if let Protocol::RFC5424(v) = m.protocol {
        put("version", Value::Integer(i64::from(v)));
    }
    for element in m.structured_data {
        let params: ObjectMap = element
            .params
            .iter()
            .map(|(k, v)| (KeyString::from(*k), Value::from(*v)))
            .collect();
        put(element.id, Value::Object(params));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5424_with_structured_data() {
        let f = fields(r#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 1234 ID47 [exampleSDID@32473 iut="3" eventSource="Application"] An application event"#)
            .expect("5424");
        assert_eq!(f["message"], Value::from("An application event"));
        assert_eq!(f["hostname"], Value::from("mymachine.example.com"));
        assert_eq!(f["appname"], Value::from("evntslog"));
        assert_eq!(f["procid"], Value::Integer(1234));
        assert_eq!(f["msgid"], Value::from("ID47"));
        assert_eq!(f["facility"], Value::from("local4"));
        assert_eq!(f["severity"], Value::from("notice"));
        assert_eq!(f["version"], Value::Integer(1));
        assert_eq!(
            f["exampleSDID@32473"].get(&crate::pipeline::path::parse("eventSource").expect("path")),
            Some(&Value::from("Application"))
        );
        let Value::Timestamp(t) = &f["timestamp"] else {
            panic!("a timestamp: {:?}", f["timestamp"]);
        };
        assert_eq!(t.to_rfc3339(), "2003-10-11T22:14:15.003+00:00");
    }

    #[test]
    fn rfc3164_and_its_variants() {
        let f = fields(
            "<34>Oct 11 22:14:15 mymachine su[230]: 'su root' failed for lonvick on /dev/pts/8",
        )
        .expect("3164");
        assert_eq!(f["hostname"], Value::from("mymachine"));
        assert_eq!(f["appname"], Value::from("su"));
        assert_eq!(f["procid"], Value::Integer(230));
        assert_eq!(f["facility"], Value::from("auth"));
        assert_eq!(f["severity"], Value::from("crit"));
        assert_eq!(
            f["message"],
            Value::from("'su root' failed for lonvick on /dev/pts/8")
        );
        // An ISO timestamp, no hostname.
        let iso = fields("<13>2024-05-01T10:00:00Z app: started").expect("iso 3164");
        assert_eq!(iso["message"], Value::from("started"));
        assert!(fields("just words, not syslog at all").is_err());
    }
}
