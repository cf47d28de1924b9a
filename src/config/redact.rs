//! Keeping secrets out of what sluice prints about its configuration.
//!
//! A config error quotes the value it refused, and that value may be a
//! secret: a password interpolated into a URL, a token put in a size field
//! by mistake. Every value `${VAR}` substituted from the environment is
//! replaced by `<redacted>` in config messages (sluice cannot tell which
//! variables are secret, so it treats them all as such), and so is the
//! password of any URL's userinfo (`scheme://user:<redacted>@host`).

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
