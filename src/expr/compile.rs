//! AST to a compiled program: field paths become scanner slots, regexes and
//! substring searchers are built once, so evaluation does no parsing, no
//! allocation (except for strings written with escapes) and no lookups by name.

use memchr::memmem;
use regex::bytes::{Regex, RegexBuilder};

use super::FilterError;
use super::parser::{Ast, CmpOp, Lit, Method};
use super::scan::{FieldSet, Scratch, Span};
use super::value::{Val, compare, loose_eq, strict_eq};

#[derive(Debug)]
pub(crate) enum Node {
    Lit(Lit),
    Field(u32),
    Raw,
    Not(Box<Node>),
    And(Box<[Node]>),
    Or(Box<[Node]>),
    Cmp(CmpOp, Box<Node>, Box<Node>),
    /// `field == "literal"` (and `!=`, `===`, `!==`): the commonest filter,
    /// compared on the raw bytes when that is exact.
    FieldStr {
        op: CmpOp,
        slot: u32,
        lit: Lit,
    },
    /// `field <op> number`.
    FieldNum {
        op: CmpOp,
        slot: u32,
        lit: Lit,
    },
    In(Box<Node>, Box<[Lit]>),
    Regex {
        target: Box<Node>,
        re: Box<Regex>,
        negate: bool,
    },
    StartsWith(Box<Node>, Box<[u8]>),
    EndsWith(Box<Node>, Box<[u8]>),
    Includes {
        target: Box<Node>,
        arg: Lit,
        finder: Box<memmem::Finder<'static>>,
    },
    Exists(u32),
}

/// What a filter reads: the event's raw bytes, and the scanner that locates
/// its fields on demand.
#[derive(Clone, Copy)]
pub struct Env<'a> {
    pub raw: &'a [u8],
    pub fields: &'a FieldSet,
    pub scratch: &'a Scratch,
}

impl Env<'_> {
    #[inline]
    fn span(&self, slot: u32) -> Span {
        self.fields.get(self.raw, self.scratch, slot)
    }
}

pub(crate) fn compile(ast: Ast, fields: &mut FieldSet) -> Result<Node, FilterError> {
    Ok(match ast {
        Ast::Lit(l) => Node::Lit(l),
        Ast::Path(p) => Node::Field(slot(fields, &p)?),
        Ast::Raw => Node::Raw,
        Ast::Not(inner) => Node::Not(Box::new(compile(*inner, fields)?)),
        Ast::And(items) => Node::And(
            items
                .into_iter()
                .map(|a| compile(a, fields))
                .collect::<Result<_, _>>()?,
        ),
        Ast::Or(items) => Node::Or(
            items
                .into_iter()
                .map(|a| compile(a, fields))
                .collect::<Result<_, _>>()?,
        ),
        Ast::Cmp(op, l, r) => {
            let l = compile(*l, fields)?;
            let r = compile(*r, fields)?;
            // Put the literal on the right, mirroring the operator.
            let (op, l, r) = match (&l, &r) {
                (Node::Lit(_), Node::Field(_)) => (mirror(op), r, l),
                _ => (op, l, r),
            };
            match (l, r) {
                (Node::Field(slot), Node::Lit(lit @ Lit::Str(_)))
                    if matches!(
                        op,
                        CmpOp::Eq | CmpOp::Ne | CmpOp::StrictEq | CmpOp::StrictNe
                    ) =>
                {
                    Node::FieldStr { op, slot, lit }
                }
                (Node::Field(slot), Node::Lit(lit @ Lit::Num(_))) => {
                    Node::FieldNum { op, slot, lit }
                }
                (l, r) => Node::Cmp(op, Box::new(l), Box::new(r)),
            }
        }
        Ast::In(t, list) => Node::In(Box::new(compile(*t, fields)?), list.into()),
        Ast::Regex {
            target,
            pattern,
            flags,
            negate,
            offset,
        } => {
            let (re, _) = regex(&pattern, &flags, offset)?;
            Node::Regex {
                target: Box::new(compile(*target, fields)?),
                re: Box::new(re),
                negate,
            }
        }
        Ast::Method(target, method, arg) => {
            let target = Box::new(compile(*target, fields)?);
            match method {
                Method::StartsWith | Method::EndsWith => {
                    let Lit::Str(s) = arg else {
                        return Err(FilterError::new(0, "string method needs a string"));
                    };
                    let s: Box<[u8]> = s.into_bytes().into();
                    if method == Method::StartsWith {
                        Node::StartsWith(target, s)
                    } else {
                        Node::EndsWith(target, s)
                    }
                }
                Method::Includes => {
                    let needle = lit_as_text(&arg);
                    Node::Includes {
                        target,
                        arg,
                        finder: Box::new(memmem::Finder::new(needle.as_bytes()).into_owned()),
                    }
                }
            }
        }
        Ast::Exists(p) => Node::Exists(slot(fields, &p)?),
        Ast::Arith { offset, .. }
        | Ast::Neg(_, offset)
        | Ast::Cond { offset, .. }
        | Ast::Nullish(_, _, offset)
        | Ast::Call { offset, .. }
        | Ast::Pattern { offset, .. } => {
            // A filter is read lazily from the event's bytes and only
            // compares; computing belongs to a pipeline's `eval`.
            return Err(FilterError::new(
                offset,
                "this computes a value, and a filter only compares fields with values: set a field with a pipeline's `eval` and filter on it",
            ));
        }
    })
}

/// A regex literal's regex, and whether it has the global flag `g`.
pub(crate) fn regex(
    pattern: &str,
    flags: &str,
    offset: usize,
) -> Result<(Regex, bool), FilterError> {
    let mut b = RegexBuilder::new(pattern);
    // A literal's regex is bounded by the filter's length; its compiled
    // form by the regex crate's default size limit.
    let mut global = false;
    for f in flags.chars() {
        match f {
            'i' => {
                b.case_insensitive(true);
            }
            'm' => {
                b.multi_line(true);
            }
            's' => {
                b.dot_matches_new_line(true);
            }
            // Replace every match rather than the first (eval's `replace`).
            'g' => global = true,
            // Sticky and unicode change nothing for a yes/no match.
            'y' | 'u' => {}
            other => {
                return Err(FilterError::new(
                    offset,
                    format!("unknown regex flag `{other}` (use i, m, s or g)"),
                ));
            }
        }
    }
    let re = b
        .build()
        .map_err(|e| FilterError::new(offset, format!("invalid regex: {}", first_line(&e))))?;
    Ok((re, global))
}

fn slot(fields: &mut FieldSet, path: &[super::parser::Segment]) -> Result<u32, FilterError> {
    if path.len() > super::scan::MAX_PATH_DEPTH {
        return Err(FilterError::new(
            0,
            format!(
                "field paths may be at most {} levels deep",
                super::scan::MAX_PATH_DEPTH
            ),
        ));
    }
    Ok(fields.slot(path))
}

/// `a < b` is `b > a`.
fn mirror(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::Le => CmpOp::Ge,
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::Ge => CmpOp::Le,
        other => other,
    }
}

fn first_line(e: &regex::Error) -> String {
    // regex's message ends with a line like "error: unclosed group".
    let s = e.to_string();
    let last = s.lines().last().unwrap_or("").trim();
    last.strip_prefix("error: ").unwrap_or(last).to_string()
}

/// JavaScript `String(lit)`.
pub(crate) fn lit_as_text(lit: &Lit) -> String {
    match lit {
        Lit::Null => "null".into(),
        Lit::Bool(b) => b.to_string(),
        Lit::Num(n) if n.fract() == 0.0 && n.abs() < 1e21 => format!("{}", *n as i64),
        Lit::Num(n) => n.to_string(),
        Lit::Str(s) => s.clone(),
    }
}

impl Node {
    #[inline]
    fn val<'a>(&'a self, env: &Env<'a>) -> Val<'a> {
        match self {
            Node::Lit(l) => Val::from_lit(l),
            Node::Field(slot) => field(env, *slot),
            Node::Raw => Val::Bytes(env.raw),
            other => Val::Bool(other.truth(env)),
        }
    }

    pub(crate) fn truth(&self, env: &Env<'_>) -> bool {
        match self {
            Node::Lit(_) | Node::Field(_) | Node::Raw => self.val(env).truthy(),
            Node::Not(inner) => !inner.truth(env),
            Node::And(items) => items.iter().all(|n| n.truth(env)),
            Node::Or(items) => items.iter().any(|n| n.truth(env)),
            Node::Cmp(op, l, r) => compare(*op, &l.val(env), &r.val(env)),
            Node::FieldStr { op, slot, lit } => {
                let raw = raw_field(env, *slot);
                if let (Some(body), Lit::Str(want)) = (raw.and_then(json_string_body), lit)
                    && let Some(equal) = bytes_equal_exact(body, want.as_bytes())
                {
                    let negate = matches!(op, CmpOp::Ne | CmpOp::StrictNe);
                    return equal != negate;
                }
                compare(
                    *op,
                    &raw.map_or(Val::Missing, Val::from_json),
                    &Val::from_lit(lit),
                )
            }
            Node::FieldNum { op, slot, lit } => {
                compare(*op, &field(env, *slot), &Val::from_lit(lit))
            }
            Node::In(t, list) => {
                let v = t.val(env);
                !v.is_missing() && list.iter().any(|l| loose_eq(&v, &Val::from_lit(l)))
            }
            Node::Regex { target, re, negate } => match target.val(env).as_match_text() {
                Some(text) => re.is_match(&text) != *negate,
                None => false,
            },
            Node::StartsWith(t, s) => t.val(env).text().is_some_and(|x| x.starts_with(s)),
            Node::EndsWith(t, s) => t.val(env).text().is_some_and(|x| x.ends_with(s)),
            Node::Includes {
                target,
                arg,
                finder,
            } => match target.val(env) {
                Val::Array(raw) => {
                    let want = Val::from_lit(arg);
                    let mut found = false;
                    super::scan::for_each_element(raw, |el| {
                        found = strict_eq(&Val::from_json(el), &want);
                        !found
                    });
                    found
                }
                v => v.text().is_some_and(|x| finder.find(&x).is_some()),
            },
            Node::Exists(slot) => !env.span(*slot).is_missing(),
        }
    }
}

#[inline]
fn raw_field<'a>(env: &Env<'a>, slot: u32) -> Option<&'a [u8]> {
    let s = env.span(slot);
    if s.is_missing() {
        return None;
    }
    env.raw.get(s.start as usize..s.end as usize)
}

#[inline]
fn field<'a>(env: &Env<'a>, slot: u32) -> Val<'a> {
    raw_field(env, slot).map_or(Val::Missing, Val::from_json)
}

/// The bytes between the quotes of a JSON string value.
#[inline]
fn json_string_body(raw: &[u8]) -> Option<&[u8]> {
    match raw {
        [b'"', body @ .., b'"'] => Some(body),
        _ => None,
    }
}

/// Whether a JSON string body equals `want`, when that can be told from the
/// raw bytes. Escapes only ever make the raw text longer than its value, so a
/// body as long as `want` and free of backslashes is compared byte for byte,
/// and a shorter one cannot be equal. A longer body with escapes needs
/// decoding: `None`.
#[inline]
fn bytes_equal_exact(body: &[u8], want: &[u8]) -> Option<bool> {
    use std::cmp::Ordering::*;
    match body.len().cmp(&want.len()) {
        Less => Some(false),
        Equal => Some(body == want && !want.contains(&b'\\')),
        Greater if memchr::memchr(b'\\', body).is_none() => Some(false),
        Greater => None,
    }
}
