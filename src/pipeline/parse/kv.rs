//! `key=value` pairs (logfmt and the like): pairs split by the delimiter
//! (default: whitespace), each at its first separator (default `=`); a
//! value may be double-quoted (`msg="two words"`, `\"` inside). Words that
//! are not pairs are skipped; a line with no pair does not parse.

use vrl::value::{KeyString, ObjectMap, Value};

pub struct Kv {
    /// `None`: any whitespace.
    delimiter: Option<String>,
    separator: String,
}

impl Kv {
    pub fn new(delimiter: Option<&str>, separator: Option<&str>) -> Result<Kv, String> {
        let separator = separator.unwrap_or("=").to_string();
        if separator.is_empty() {
            return Err("separator cannot be empty".into());
        }
        if delimiter.is_some_and(str::is_empty) {
            return Err("delimiter cannot be empty".into());
        }
        Ok(Kv {
            delimiter: delimiter.map(str::to_string),
            separator,
        })
    }

    /// Split `text` at delimiters outside double quotes.
    fn tokens<'a>(&self, text: &'a str) -> Vec<&'a str> {
        let mut out = Vec::new();
        let (mut start, mut quoted, mut escaped) = (0, false, false);
        let mut i = 0;
        while i < text.len() {
            let rest = &text[i..];
            let c = rest.chars().next().unwrap_or(' ');
            if escaped {
                escaped = false;
            } else if c == '\\' && quoted {
                escaped = true;
            } else if c == '"' {
                quoted = !quoted;
            } else if !quoted {
                let width = match &self.delimiter {
                    None if c.is_whitespace() => c.len_utf8(),
                    Some(d) if rest.starts_with(d.as_str()) => d.len(),
                    _ => 0,
                };
                if width > 0 {
                    out.push(&text[start..i]);
                    i += width;
                    start = i;
                    continue;
                }
            }
            i += c.len_utf8();
        }
        out.push(&text[start..]);
        out
    }

    pub fn fields(&self, text: &str) -> Result<ObjectMap, String> {
        let mut out = ObjectMap::new();
        for token in self.tokens(text) {
            let Some((k, v)) = token.split_once(self.separator.as_str()) else {
                continue;
            };
            let k = k.trim();
            if k.is_empty() {
                continue;
            }
            out.insert(KeyString::from(k), Value::from(unquote(v.trim())));
        }
        if out.is_empty() {
            return Err("no key=value pair".into());
        }
        Ok(out)
    }
}

fn unquote(v: &str) -> String {
    match v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_and_other_delimiters() {
        let kv = Kv::new(None, None).expect("kv");
        let f = kv
            .fields(r#"level=info msg="user \"bob\" logged in" took=12ms  lone"#)
            .expect("pairs");
        assert_eq!(f["level"], Value::from("info"));
        assert_eq!(f["msg"], Value::from(r#"user "bob" logged in"#));
        assert_eq!(f["took"], Value::from("12ms"));
        assert_eq!(f.len(), 3);
        let semi = Kv::new(Some(";"), Some(":")).expect("kv");
        let f = semi.fields("a:1;b: two words ;c:").expect("pairs");
        assert_eq!(f["b"], Value::from("two words"));
        assert_eq!(f["c"], Value::from(""));
        assert!(kv.fields("no pairs here").is_err());
    }
}
