//! Keeping secrets out of what sluice prints: config messages, logs (on
//! stderr and over OTLP), the status API and panic messages.
//!
//! A config error quotes the value it refused, and that value may be a
//! secret: a password interpolated into a URL, a token put in a size field
//! by mistake. Every value `${VAR}` substituted from the environment is
//! replaced by `<redacted>` in config messages (sluice cannot tell which
//! variables are secret, so it treats them all as such), and so is the
//! password of any URL's userinfo (`scheme://user:<redacted>@host`).
//!
//! Logs, the status API and panics apply the same rules with every value
//! interpolated into any configuration loaded since start (a reload keeps
//! the old secrets redacted: lines about the old config may still be in
//! flight), except values that cannot be secrets and that logs quote all
//! the time: numbers, booleans and addresses (a `${PORT}` would otherwise
//! hide every port in the log).

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

use arc_swap::ArcSwap;

/// What replaces a secret.
pub const REDACTED: &str = "<redacted>";

#[derive(Debug, Default, Clone)]
pub struct Redactor {
    /// Longest first, so a secret containing another is replaced whole.
    secrets: Vec<String>,
}

impl Redactor {
    pub fn new(mut values: Vec<String>) -> Redactor {
        values.retain(|v| !v.trim().is_empty());
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        Redactor { secrets: values }
    }

    /// `text` unchanged (not copied) when it holds no secret.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if !text.contains("://") && !self.secrets.iter().any(|s| text.contains(s.as_str())) {
            return Cow::Borrowed(text);
        }
        Cow::Owned(self.apply(text))
    }

    /// Every string in `value`, redacted.
    pub fn redact_json(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(s) => {
                if let Cow::Owned(r) = self.redact(s) {
                    *s = r;
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(|v| self.redact_json(v)),
            serde_json::Value::Object(o) => o.values_mut().for_each(|v| self.redact_json(v)),
            _ => {}
        }
    }

    pub fn apply(&self, text: &str) -> String {
        let mut out = userinfo(text);
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), REDACTED);
            }
        }
        out
    }
}

static IN_FORCE: LazyLock<ArcSwap<Redactor>> =
    LazyLock::new(|| ArcSwap::from_pointee(Redactor::default()));

/// Add a loaded configuration's interpolated values to what logs, the
/// status API and panics redact (those that could be secrets).
pub fn remember(values: &[String]) {
    let new: Vec<String> = values
        .iter()
        .filter(|v| could_be_secret(v))
        .cloned()
        .collect();
    if new.is_empty() {
        return;
    }
    IN_FORCE.rcu(|current| {
        let mut all = current.secrets.clone();
        all.extend(new.iter().cloned());
        Arc::new(Redactor::new(all))
    });
}

/// What logs, the status API and panics redact.
pub fn in_force() -> Arc<Redactor> {
    IN_FORCE.load_full()
}

/// Numbers, booleans and addresses are quoted by logs all the time and
/// are not secrets; anything else may be.
fn could_be_secret(v: &str) -> bool {
    let v = v.trim();
    !(v.len() < 4
        || v.parse::<f64>().is_ok()
        || matches!(v, "true" | "false")
        || v.parse::<std::net::SocketAddr>().is_ok()
        || v.parse::<std::net::IpAddr>().is_ok())
}

/// A `tracing_subscriber` writer to stderr that redacts each formatted
/// log line (the formatter writes one event per writer) before it goes out.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedactedStderr;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactedStderr {
    type Writer = RedactedLine;

    fn make_writer(&'a self) -> RedactedLine {
        RedactedLine(Vec::new())
    }
}

/// One log line, written (redacted) to stderr when dropped.
pub struct RedactedLine(Vec<u8>);

impl std::io::Write for RedactedLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RedactedLine {
    fn drop(&mut self) {
        use std::io::Write as _;
        let text = String::from_utf8_lossy(&self.0);
        let out = in_force().redact(&text).into_owned();
        // Nowhere to report a failed write to stderr.
        let _ = std::io::stderr().lock().write_all(out.as_bytes());
    }
}

/// Print panics redacted (the default hook prints the message verbatim).
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let mut text = format!("thread '{}' {info}", thread.name().unwrap_or("<unnamed>"));
        // As the default hook: a backtrace when RUST_BACKTRACE asks for one.
        let trace = std::backtrace::Backtrace::capture();
        if trace.status() == std::backtrace::BacktraceStatus::Captured {
            text.push_str(&format!("\nstack backtrace:\n{trace}"));
        }
        let out = in_force().redact(&text).into_owned();
        eprintln!("{}", out.trim_end());
    }));
}

/// `text` with every URL's userinfo password (or, without a `:`, the whole
/// userinfo, often a token) replaced.
pub fn userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (before, after) = rest.split_at(i + 3);
        out.push_str(before);
        let end = after
            .find(|c: char| c.is_whitespace() || "/?#\"'`<>".contains(c))
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(at) => {
                let info = &authority[..at];
                match info.split_once(':') {
                    Some((user, _)) => {
                        out.push_str(user);
                        out.push(':');
                        out.push_str(REDACTED);
                    }
                    None => out.push_str(REDACTED),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_passwords_and_tokens() {
        assert_eq!(
            userinfo("bad scheme in `ftp://admin:hunter2@files.example/x` here"),
            "bad scheme in `ftp://admin:<redacted>@files.example/x` here"
        );
        assert_eq!(
            userinfo("https://ghp_abc@github.com/o/r https://h/p?u=a@b"),
            "https://<redacted>@github.com/o/r https://h/p?u=a@b"
        );
        assert_eq!(userinfo("no url: a@b:c"), "no url: a@b:c");
        assert_eq!(userinfo("x://"), "x://");
    }

    #[test]
    fn numbers_and_addresses_are_not_taken_for_secrets() {
        for v in ["8080", "1.5", "true", "127.0.0.1:9000", "::1", "ab"] {
            assert!(!could_be_secret(v), "{v}");
        }
        for v in ["hunter2", "s3cr3t-token", "localhost:9000"] {
            assert!(could_be_secret(v), "{v}");
        }
    }

    #[test]
    fn unchanged_text_is_not_copied() {
        let r = Redactor::new(vec!["hunter2".into()]);
        assert!(matches!(r.redact("nothing here"), Cow::Borrowed(_)));
        assert_eq!(r.redact("pw hunter2"), "pw <redacted>");
        let mut v = serde_json::json!({"a": ["x https://u:hunter2@h/"], "b": 1});
        r.redact_json(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"a": ["x https://u:<redacted>@h/"], "b": 1})
        );
    }

    #[test]
    fn interpolated_values_are_replaced_longest_first() {
        let r = Redactor::new(vec!["hunter2".into(), "hunter2-long".into(), " ".into()]);
        assert_eq!(
            r.apply("invalid size `hunter2-long` and hunter2"),
            "invalid size `<redacted>` and <redacted>"
        );
    }

    proptest::proptest! {
        /// Whatever surrounds it (URLs included), an interpolated value
        /// never survives. (Secrets drawn without the letters of
        /// `<redacted>`, which could otherwise be rebuilt across it.)
        #[test]
        fn a_secret_never_survives(
            pre in "(.|://|@|:){0,20}",
            secret in "[A-Z0-9_!%]{1,20}",
            post in "(.|://|@|:){0,20}",
        ) {
            let r = Redactor::new(vec![secret.clone()]);
            let out = r.apply(&format!("{pre}{secret}{post}"));
            proptest::prop_assert!(!out.contains(&secret), "{out:?} still holds {secret:?}");
        }
    }
}
