//! `${VAR}` and `${VAR:-default}` in configuration text, resolved from the
//! environment before the YAML is parsed (as Vector does), so any value —
//! a port, a size, a secret — can come from the environment. `$${` writes a
//! literal `${`.

/// An unresolvable reference, at a byte offset of the original text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterpolationError {
    pub offset: usize,
    pub message: String,
}

pub fn interpolate(
    src: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, InterpolationError> {
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    let mut consumed = 0;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let at = consumed + pos;
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
            consumed = at + 3;
            continue;
        }
        if !after.starts_with("${") {
            out.push('$');
            rest = &after[1..];
            consumed = at + 1;
            continue;
        }
        let Some(close) = after.find('}') else {
            return Err(InterpolationError {
                offset: at,
                message: "unterminated `${`: expected `}`".into(),
            });
        };
        let inner = &after[2..close];
        let (name, default) = match inner.find(":-") {
            Some(i) => (&inner[..i], Some(&inner[i + 2..])),
            None => (inner, None),
        };
        let valid = !name.is_empty()
            && name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(InterpolationError {
                offset: at,
                message: format!("`${{{inner}}}` is not a valid variable reference"),
            });
        }
        match (
            lookup(name).filter(|v| !v.is_empty() || default.is_none()),
            default,
        ) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(InterpolationError {
                    offset: at,
                    message: format!(
                        "environment variable `{name}` is not set (write `${{{name}:-default}}` for a default)"
                    ),
                });
            }
        }
        rest = &after[close + 1..];
        consumed = at + close + 1;
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("9000".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitutes() {
        assert_eq!(
            interpolate("a: ${PORT}\nb: ${NOPE:-x y}\nc: $${PORT} $5", env).unwrap(),
            "a: 9000\nb: x y\nc: ${PORT} $5"
        );
        assert_eq!(interpolate("${EMPTY:-d}", env).unwrap(), "d");
        assert_eq!(interpolate("${EMPTY}", env).unwrap(), "");
    }

    #[test]
    fn errors_point_at_the_reference() {
        let e = interpolate("x: 1\ny: ${NOPE}", env).unwrap_err();
        assert_eq!(e.offset, 8);
        assert!(e.message.contains("NOPE"));
        assert_eq!(interpolate("${1A}", env).unwrap_err().offset, 0);
        assert_eq!(interpolate("ab ${X", env).unwrap_err().offset, 3);
    }
}
