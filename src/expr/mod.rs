//! The filter language: JavaScript-like expressions as Cribl users write them.
//!
//! ```text
//! level == "error" && status >= 500
//! kube.namespace.startsWith("prod") || tags[0] in ["a", "b"]
//! _raw =~ /timeout/i && !exists(retry)
//! ```
//!
//! A filter is compiled once (`Program::compile`). Field paths become slots in a
//! `FieldSet` shared by every route. Evaluation asks for fields as it needs
//! them and the scanner reads the event only as far as those are (see
//! `scan.rs`), once per event however many routes ask. A missing field
//! compares false; nothing fails at run time.

mod compile;
pub mod compute;
mod lexer;
pub mod parser;
pub mod scan;
mod value;

use std::fmt;

pub use compile::Env;
pub use scan::{FieldSet, MISSING, Scratch, Span};
pub use value::{number, scalar_text};

/// Parse a field path (`kube.namespace`, `tags[0]`) as filters write it.
pub fn parse_path(src: &str) -> Result<Vec<parser::Segment>, FilterError> {
    match parser::parse(src)? {
        parser::Ast::Path(p) if p.len() <= scan::MAX_PATH_DEPTH => Ok(p),
        parser::Ast::Path(_) => Err(FilterError::new(0, "field path too deep")),
        _ => Err(FilterError::new(0, format!("`{src}` is not a field path"))),
    }
}

use crate::event::{Event, Format};

/// A compile error at a byte offset of the filter text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub offset: usize,
    pub message: String,
}

impl FilterError {
    pub fn new(offset: usize, message: impl Into<String>) -> Self {
        Self {
            offset,
            message: message.into(),
        }
    }
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at offset {})", self.message, self.offset)
    }
}

impl std::error::Error for FilterError {}

/// A filter compiled against a `FieldSet` that may be shared with other filters.
#[derive(Debug)]
pub struct Program {
    node: compile::Node,
    always: Option<bool>,
}

impl Program {
    pub fn compile(src: &str, fields: &mut FieldSet) -> Result<Program, FilterError> {
        let ast = parser::parse(src)?;
        let always = match &ast {
            parser::Ast::Lit(l) => Some(value::Val::from_lit(l).truthy()),
            _ => None,
        };
        let node = compile::compile(ast, fields)?;
        Ok(Program { node, always })
    }

    /// `Some(b)` when the filter is the constant `b` (`true`, say): the router
    /// then skips evaluation entirely.
    pub fn constant(&self) -> Option<bool> {
        self.always
    }

    #[inline]
    pub fn eval(&self, env: &Env<'_>) -> bool {
        match self.always {
            Some(b) => b,
            None => self.node.truth(env),
        }
    }
}

/// A standalone filter with its own field set: for tools, tests and benchmarks.
/// The router shares one `FieldSet` across all routes instead.
#[derive(Debug)]
pub struct Filter {
    program: Program,
    fields: FieldSet,
}

impl Filter {
    pub fn new(src: &str) -> Result<Filter, FilterError> {
        let mut fields = FieldSet::new();
        let program = Program::compile(src, &mut fields)?;
        Ok(Filter { program, fields })
    }

    /// Reusable working memory for `matches`, so evaluation does not allocate.
    pub fn scratch(&self) -> Scratch {
        Scratch::new(self.fields.len())
    }

    #[inline]
    pub fn matches(&self, event: &Event, scratch: &mut Scratch) -> bool {
        prepare(&self.fields, event, scratch);
        self.program.eval(&Env {
            raw: &event.raw,
            fields: &self.fields,
            scratch,
        })
    }
}

/// Get `scratch` ready to locate `fields` in `event` on demand; text events
/// have no fields.
#[inline]
pub fn prepare(fields: &FieldSet, event: &Event, scratch: &mut Scratch) {
    let json = match event.format {
        Format::Json => Some(&event.raw[..]),
        Format::Text => None,
    };
    scratch.reset(fields, json);
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn m(filter: &str, json: &str) -> bool {
        let f = Filter::new(filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
        let mut s = f.scratch();
        f.matches(
            &Event::json(Bytes::copy_from_slice(json.as_bytes())),
            &mut s,
        )
    }

    const EV: &str = r#"{"level":"error","status":503,"code":"404","kube":{"namespace":"prod-eu"},"tags":["a","b",3],"msg":"upstream timed out","ok":false,"n":null,"esc":"say \"hi\"","uni":"\u00e9","num_str":"42"}"#;

    #[test]
    fn the_language() {
        let yes = [
            "true",
            r#"level == "error""#,
            r#"level == 'error' && status >= 500"#,
            r#"level === "error" && status === 503"#,
            "status == '503'",
            "code == 404",
            "code !== 404",
            "status > 500 && status < 504 && status <= 503 && status >= 503",
            r#"kube.namespace.startsWith("prod")"#,
            r#"kube.namespace.endsWith("-eu")"#,
            r#"msg.includes("timed")"#,
            r#"tags.includes("b")"#,
            "tags.includes(3)",
            r#"tags[0] == "a""#,
            r#"kube["namespace"] == "prod-eu""#,
            r#"level in ["warn", "error"]"#,
            r#"status in [500, 503]"#,
            r#"msg =~ /TIMED\s+out/i"#,
            r#"msg !~ /^ok/"#,
            r#"_raw =~ /"status":5\d\d/"#,
            r#"_raw.includes("upstream")"#,
            "exists(kube.namespace)",
            "!exists(kube.pod)",
            "exists(n)",
            "!ok",
            "level",
            "!(level == 'info') && (status == 503 || false)",
            "n == null",
            "ok == false",
            r#""error" == level"#,
            "500 < status",
            r#"esc == "say \"hi\"""#,
            r#"uni == "é""#,
            r#"uni === "é""#,
            r#"esc != "say""#,
            "num_str == 42",
        ];
        for f in yes {
            assert!(m(f, EV), "expected match: {f}");
        }
        let no = [
            "false",
            r#"level == "info""#,
            "status >= 600",
            "missing == 1",
            "missing != 1",
            "missing < 1 || missing > 1",
            "missing",
            r#"missing in ["a"]"#,
            r#"missing =~ /./"#,
            r#"missing !~ /./"#,
            r#"missing.startsWith("")"#,
            r#"tags.includes("3")"#,
            "kube.namespace.pod == 1",
            "tags[7] == 1",
            "exists(kube.pod)",
            "ok",
            "n",
            "status === '503'",
            r#"uni == "e""#,
            r#"uni !== "é""#,
            r#"esc == "say \\\"hi\\\"""#,
            "num_str === 42",
            "500 > status",
        ];
        for f in no {
            assert!(!m(f, EV), "expected no match: {f}");
        }
    }

    #[test]
    fn text_events_only_see_raw() {
        let f = Filter::new(r#"_raw.startsWith("GET") && !exists(level)"#).unwrap();
        let mut s = f.scratch();
        assert!(f.matches(&Event::text(Bytes::from_static(b"GET /x")), &mut s));
        let f = Filter::new(r#"level == "x""#).unwrap();
        let mut s = f.scratch();
        assert!(!f.matches(
            &Event::text(Bytes::from_static(br#"{"level":"x"}"#)),
            &mut s
        ));
    }

    #[test]
    fn compile_errors() {
        for (src, offset) in [
            ("msg =~ /(/", 7),
            ("msg =~ /a/q", 7),
            ("a.nope('x')", 2),
            ("a.startsWith(1)", 13),
        ] {
            let e = Filter::new(src).unwrap_err();
            assert_eq!(e.offset, offset, "{src}: {e}");
        }
    }
}
