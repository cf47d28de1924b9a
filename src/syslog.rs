//! Reading one syslog message (RFC 5424, RFC 3164 and its real-world
//! variants: no hostname, ISO timestamps, `<PRI>` only), shared by the
//! `syslog` source and the `parse` function's `format: syslog`. A timestamp
//! without a zone is UTC; one without a year (3164) is in the last twelve
//! months.

use chrono::{Datelike, TimeZone, Utc};
use syslog_loose::{IncompleteDate, Message, Protocol, Variant};

/// The message, or `None` when `line` is not syslog: a message must at
/// least start with a valid `<PRI>` (syslog_loose reads some free text as
/// a bare 3164 message with no priority; that is not syslog).
pub fn message(line: &str) -> Option<Message<&str>> {
    match syslog_loose::parse_message_with_year_exact_tz(line, year, Some(Utc), Variant::Either) {
        Ok(m) if m.facility.is_some() => Some(m),
        _ => pri_only(line),
    }
}

/// `<PRI>` then free text, as some devices send: the rest is the message.
fn pri_only(line: &str) -> Option<Message<&str>> {
    let rest = line.trim().strip_prefix('<')?;
    let end = rest.find('>')?;
    let digits = &rest[..end];
    if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let pri: u8 = digits.parse().ok().filter(|p| *p <= 191)?;
    let (facility, severity) = syslog_loose::decompose_pri(pri);
    Some(Message {
        protocol: Protocol::RFC3164,
        facility,
        severity,
        timestamp: None,
        hostname: None,
        appname: None,
        procid: None,
        msgid: None,
        structured_data: Vec::new(),
        msg: rest[end + 1..].trim_start(),
    })
}

/// The year of a date written without one: this year, unless that puts it
/// more than a day ahead (a December line read in January).
fn year(d: IncompleteDate) -> i32 {
    let now = Utc::now();
    let (month, day, hour, minute, second) = d;
    let this = now.year();
    let ahead = Utc
        .with_ymd_and_hms(this, month, day, hour, minute, second)
        .single()
        .is_some_and(|t| t > now + chrono::Duration::days(1));
    if ahead { this - 1 } else { this }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pri_only_and_not_syslog() {
        let m = message("<13>just a message").expect("pri only");
        assert_eq!(m.msg, "just a message");
        assert_eq!(m.facility.map(|f| f.as_str()), Some("user"));
        assert_eq!(m.severity.map(|s| s.as_str()), Some("notice"));
        for line in ["just words, not syslog", "<999>x", "<>x", "<13 no end", ""] {
            assert!(message(line).is_none(), "{line}");
        }
    }
}
