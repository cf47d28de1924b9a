//! Field paths as the Cribl-style functions take them (`message`,
//! `http.status`, `tags[0]`): VRL's path syntax, without the leading dot.

use vrl::path::OwnedValuePath;

pub fn parse(text: &str) -> Result<OwnedValuePath, String> {
    let t = text.trim();
    if t.is_empty() || t == "." {
        return Err("a field path cannot be empty".into());
    }
    let dotted = if t.starts_with('.') {
        t.to_string()
    } else {
        format!(".{t}")
    };
    vrl::path::parse_value_path(&dotted).map_err(|_| format!("`{text}` is not a field path"))
}

/// An optional path setting; an error names the setting.
pub fn parse_opt(text: Option<&str>, setting: &str) -> Result<Option<OwnedValuePath>, String> {
    text.map(parse)
        .transpose()
        .map_err(|e| format!("{setting}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_with_and_without_the_dot() {
        assert_eq!(parse("a.b").expect("path"), parse(".a.b").expect("path"));
        assert!(parse("tags[0]").is_ok());
        assert!(parse("").is_err());
        assert!(parse("a..b").is_err());
    }
}
