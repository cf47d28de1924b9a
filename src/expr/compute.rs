//! Expressions evaluated on an event's parsed value rather than its bytes:
//! what a pipeline's `eval` computes (`status >= 500 ? "error" : level`,
//! `host || "unknown"`, `Math.round(bytes / 1024)`), and a filter on an
//! event a function has already parsed (no need to write it back to read it).
//!
//! Comparisons go through the same rules as filters on bytes (`value.rs`),
//! each operand seen as its written JSON, so a filter gives the same answer
//! on an event before and after it is parsed. Values follow JavaScript, as
//! Cribl's do: `+` joins when either side is text, other arithmetic reads
//! numbers, `||` gives the first truthy operand. A missing field computes
//! to missing, and an `eval` leaves a field it would set to missing unset.

use std::borrow::Cow;
use std::cell::{Cell, OnceCell};

use regex::bytes::Regex;
use vrl::value::Value;

use super::FilterError;
use super::compile::{lit_as_text, regex};
use super::parser::{self, ArithOp, Ast, CmpOp, Func, Lit, Method, Segment};
use super::value::{Val, compare, loose_eq, strict_eq};

/// The longest text an expression may build (`a + a`, `replace`): beyond
/// it the expression fails, and `eval` counts an error.
pub const MAX_TEXT: usize = 16 * 1024 * 1024;

#[derive(Debug)]
enum C {
    Lit(Lit),
    Path(Vec<Segment>),
    Raw,
    Not(Box<C>),
    And(Box<[C]>),
    Or(Box<[C]>),
    Nullish(Box<C>, Box<C>),
    Cmp(CmpOp, Box<C>, Box<C>),
    Regex {
        target: Box<C>,
        re: Box<Regex>,
        negate: bool,
    },
    In(Box<C>, Box<[Lit]>),
    Method(Box<C>, Method, Lit),
    Exists(Vec<Segment>),
    Arith(ArithOp, Box<C>, Box<C>),
    Neg(Box<C>),
    Cond(Box<C>, Box<C>, Box<C>),
    Call(Func, Option<Box<C>>, Box<[C]>),
    Pattern(Box<Regex>, bool),
}

/// A compiled expression.
#[derive(Debug)]
pub struct Expr {
    node: C,
}

/// What an expression computes.
#[derive(Debug, Clone)]
pub enum Out<'a> {
    Missing,
    Null,
    Bool(bool),
    Num(f64),
    Str(Cow<'a, [u8]>),
    /// Anything else, as the event holds it (integers stay exact).
    Value(Cow<'a, Value>),
}

/// One evaluation: the event, the time, and what went wrong.
pub struct Ctx<'a> {
    root: &'a Value,
    now_ms: f64,
    raw: OnceCell<Vec<u8>>,
    too_long: Cell<bool>,
}

impl<'a> Ctx<'a> {
    pub fn new(root: &'a Value, now_ms: f64) -> Self {
        Ctx {
            root,
            now_ms,
            raw: OnceCell::new(),
            too_long: Cell::new(false),
        }
    }

    /// Whether some text grew past `MAX_TEXT` (its result is missing).
    pub fn too_long(&self) -> bool {
        self.too_long.get()
    }

    fn raw(&self) -> &[u8] {
        self.raw
            .get_or_init(|| serde_json::to_vec(self.root).unwrap_or_default())
    }
}

impl Expr {
    pub fn compile(src: &str) -> Result<Expr, FilterError> {
        Ok(Expr {
            node: build(parser::parse(src)?)?,
        })
    }

    pub fn eval<'a>(&'a self, ctx: &'a Ctx<'a>) -> Out<'a> {
        eval(&self.node, ctx)
    }

    pub fn truth(&self, ctx: &Ctx<'_>) -> bool {
        truthy(&eval(&self.node, ctx))
    }
}

fn build(ast: Ast) -> Result<C, FilterError> {
    let b = |a: Box<Ast>| build(*a).map(Box::new);
    Ok(match ast {
        Ast::Lit(l) => C::Lit(l),
        Ast::Path(p) => C::Path(p),
        Ast::Raw => C::Raw,
        Ast::Not(a) => C::Not(b(a)?),
        Ast::And(items) => C::And(items.into_iter().map(build).collect::<Result<_, _>>()?),
        Ast::Or(items) => C::Or(items.into_iter().map(build).collect::<Result<_, _>>()?),
        Ast::Cmp(op, l, r) => C::Cmp(op, b(l)?, b(r)?),
        Ast::Regex {
            target,
            pattern,
            flags,
            negate,
            offset,
        } => C::Regex {
            target: b(target)?,
            re: Box::new(regex(&pattern, &flags, offset)?.0),
            negate,
        },
        Ast::In(t, list) => C::In(b(t)?, list.into()),
        Ast::Method(t, m, lit) => C::Method(b(t)?, m, lit),
        Ast::Exists(p) => C::Exists(p),
        Ast::Arith { op, lhs, rhs, .. } => C::Arith(op, b(lhs)?, b(rhs)?),
        Ast::Neg(a, _) => C::Neg(b(a)?),
        Ast::Cond {
            test, then, other, ..
        } => C::Cond(b(test)?, b(then)?, b(other)?),
        Ast::Nullish(l, r, _) => C::Nullish(b(l)?, b(r)?),
        Ast::Call {
            func, target, args, ..
        } => C::Call(
            func,
            target.map(b).transpose()?,
            args.into_iter().map(build).collect::<Result<_, _>>()?,
        ),
        Ast::Pattern {
            pattern,
            flags,
            offset,
        } => {
            let (re, global) = regex(&pattern, &flags, offset)?;
            C::Pattern(Box::new(re), global)
        }
    })
}

fn lookup<'a>(root: &'a Value, path: &[Segment]) -> Option<&'a Value> {
    path.iter().try_fold(root, |v, seg| match (v, seg) {
        (Value::Object(m), Segment::Key(k)) => m.get(k.as_str()),
        (Value::Array(a), Segment::Index(i)) => a.get(*i),
        _ => None,
    })
}

impl<'a> Out<'a> {
    fn of(v: &'a Value) -> Out<'a> {
        match v {
            Value::Null => Out::Null,
            Value::Boolean(b) => Out::Bool(*b),
            Value::Bytes(b) => Out::Str(Cow::Borrowed(b)),
            Value::String(s) => Out::Str(Cow::Borrowed(s.as_bytes())),
            other => Out::Value(Cow::Borrowed(other)),
        }
    }

    /// The value an `eval` writes; `None` for missing.
    pub fn into_value(self) -> Option<Value> {
        Some(match self {
            Out::Missing => return None,
            Out::Null => Value::Null,
            Out::Bool(b) => Value::Boolean(b),
            Out::Num(n) => number_value(n),
            Out::Str(s) => Value::Bytes(bytes::Bytes::from(s.into_owned())),
            Out::Value(v) => v.into_owned(),
        })
    }
}

/// A JavaScript number as the event keeps it: whole numbers as integers
/// (exact up to 2^53), others as floats, NaN and infinities as null (as
/// `JSON.stringify` writes them).
fn number_value(n: f64) -> Value {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if n.fract() == 0.0 && n.abs() <= EXACT {
        Value::Integer(n as i64)
    } else {
        if n.is_finite() {
            Value::from_f64_or_zero(n)
        } else {
            Value::Null
        }
    }
}

/// `f` with `out` seen as a filter sees a value: as its written JSON.
fn with_val<R>(out: &Out<'_>, f: impl FnOnce(&Val<'_>) -> R) -> R {
    let buf;
    let v = match out {
        Out::Missing => Val::Missing,
        Out::Null => Val::Null,
        Out::Bool(b) => Val::Bool(*b),
        Out::Num(n) => Val::Num(*n),
        Out::Str(s) => Val::Bytes(s),
        // An integer as exact as a float holds is the same number either
        // way, its text too: no need to write it out.
        Out::Value(v) if matches!(v.as_ref(), Value::Integer(i) if i.unsigned_abs() < 1 << 53) => {
            match v.as_ref() {
                Value::Integer(i) => Val::Num(*i as f64),
                _ => Val::Missing,
            }
        }
        Out::Value(v) => {
            buf = serde_json::to_vec(v.as_ref()).unwrap_or_default();
            Val::from_json(&buf)
        }
    };
    f(&v)
}

fn truthy(out: &Out<'_>) -> bool {
    with_val(out, |v| v.truthy())
}

fn number(out: &Out<'_>) -> f64 {
    match out {
        Out::Num(n) => *n,
        Out::Value(v) => match v.as_ref() {
            Value::Integer(i) => *i as f64,
            Value::Float(f) => f.into_inner(),
            _ => f64::NAN,
        },
        other => with_val(other, |v| v.to_number()),
    }
}

fn is_text(out: &Out<'_>) -> bool {
    match out {
        Out::Str(_) => true,
        Out::Value(v) => !matches!(v.as_ref(), Value::Integer(_) | Value::Float(_)),
        _ => false,
    }
}

/// JavaScript `String(x)`.
fn text<'a>(out: &Out<'a>) -> Cow<'a, [u8]> {
    match out {
        Out::Missing => Cow::Borrowed(b"undefined"),
        Out::Null => Cow::Borrowed(b"null"),
        Out::Bool(true) => Cow::Borrowed(b"true"),
        Out::Bool(false) => Cow::Borrowed(b"false"),
        Out::Num(n) => Cow::Owned(number_text(*n).into_bytes()),
        Out::Str(s) => s.clone(),
        Out::Value(v) => Cow::Owned(value_text(v)),
    }
}

fn value_text(v: &Value) -> Vec<u8> {
    match v {
        Value::Integer(i) => i.to_string().into_bytes(),
        Value::Float(f) => number_text(f.into_inner()).into_bytes(),
        Value::Timestamp(t) => t
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            .into_bytes(),
        // `[1, "a"]` joins as `1,a`, as JavaScript does.
        Value::Array(items) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                if !matches!(item, Value::Null) {
                    out.extend_from_slice(&text(&Out::of(item)));
                }
            }
            out
        }
        Value::Object(_) => b"[object Object]".to_vec(),
        Value::Regex(r) => r.as_bytes_slice().to_vec(),
        other => text(&Out::of(other)).into_owned(),
    }
}

/// JavaScript's way of writing a number, near enough: whole numbers
/// without a fraction, `NaN`, `Infinity`.
fn number_text(n: f64) -> String {
    if n.is_nan() {
        "NaN".into()
    } else if n.is_infinite() {
        if n > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else if n == 0.0 {
        "0".into()
    } else {
        n.to_string()
    }
}

fn bounded<'a>(ctx: &Ctx<'_>, s: Vec<u8>) -> Out<'a> {
    if s.len() > MAX_TEXT {
        ctx.too_long.set(true);
        return Out::Missing;
    }
    Out::Str(Cow::Owned(s))
}

fn eval<'a>(c: &'a C, ctx: &'a Ctx<'a>) -> Out<'a> {
    match c {
        C::Lit(l) => match l {
            Lit::Null => Out::Null,
            Lit::Bool(b) => Out::Bool(*b),
            Lit::Num(n) => Out::Num(*n),
            Lit::Str(s) => Out::Str(Cow::Borrowed(s.as_bytes())),
        },
        C::Path(p) => lookup(ctx.root, p).map_or(Out::Missing, Out::of),
        C::Raw => Out::Str(Cow::Borrowed(ctx.raw())),
        C::Not(a) => Out::Bool(!truthy(&eval(a, ctx))),
        C::And(items) => {
            let mut last = Out::Bool(true);
            for item in items.iter() {
                last = eval(item, ctx);
                if !truthy(&last) {
                    break;
                }
            }
            last
        }
        C::Or(items) => {
            let mut last = Out::Bool(false);
            for item in items.iter() {
                last = eval(item, ctx);
                if truthy(&last) {
                    break;
                }
            }
            last
        }
        C::Nullish(l, r) => match eval(l, ctx) {
            Out::Missing | Out::Null => eval(r, ctx),
            v => v,
        },
        C::Cmp(op, l, r) => {
            let (l, r) = (eval(l, ctx), eval(r, ctx));
            Out::Bool(with_val(&l, |a| with_val(&r, |b| compare(*op, a, b))))
        }
        C::Regex { target, re, negate } => {
            let t = eval(target, ctx);
            Out::Bool(with_val(&t, |v| {
                v.as_match_text()
                    .is_some_and(|text| re.is_match(&text) != *negate)
            }))
        }
        C::In(t, list) => {
            let v = eval(t, ctx);
            Out::Bool(with_val(&v, |v| {
                !v.is_missing() && list.iter().any(|l| loose_eq(v, &Val::from_lit(l)))
            }))
        }
        C::Method(t, m, lit) => Out::Bool(method(&eval(t, ctx), *m, lit)),
        C::Exists(p) => Out::Bool(lookup(ctx.root, p).is_some()),
        C::Arith(op, l, r) => arith(ctx, *op, eval(l, ctx), eval(r, ctx)),
        C::Neg(a) => Out::Num(-number(&eval(a, ctx))),
        C::Cond(test, then, other) => {
            if truthy(&eval(test, ctx)) {
                eval(then, ctx)
            } else {
                eval(other, ctx)
            }
        }
        C::Call(func, target, args) => call(ctx, *func, target.as_deref(), args),
        // Only ever an argument of `replace`, which reads it itself.
        C::Pattern(..) => Out::Missing,
    }
}

fn method(target: &Out<'_>, m: Method, lit: &Lit) -> bool {
    if let (Method::Includes, Out::Value(v)) = (m, target)
        && let Value::Array(items) = v.as_ref()
    {
        let want = Val::from_lit(lit);
        return items
            .iter()
            .any(|item| with_val(&Out::of(item), |el| strict_eq(el, &want)));
    }
    with_val(target, |v| {
        let Some(t) = v.text() else {
            return false;
        };
        match (m, lit) {
            (Method::StartsWith, Lit::Str(s)) => t.starts_with(s.as_bytes()),
            (Method::EndsWith, Lit::Str(s)) => t.ends_with(s.as_bytes()),
            (Method::Includes, lit) => {
                memchr::memmem::find(&t, lit_as_text(lit).as_bytes()).is_some()
            }
            _ => false,
        }
    })
}

fn arith<'a>(ctx: &Ctx<'_>, op: ArithOp, l: Out<'a>, r: Out<'a>) -> Out<'a> {
    if op == ArithOp::Add && (is_text(&l) || is_text(&r)) {
        let (a, b) = (text(&l), text(&r));
        if a.len() + b.len() > MAX_TEXT {
            ctx.too_long.set(true);
            return Out::Missing;
        }
        let mut s = a.into_owned();
        s.extend_from_slice(&b);
        return Out::Str(Cow::Owned(s));
    }
    let (a, b) = (number(&l), number(&r));
    Out::Num(match op {
        ArithOp::Add => a + b,
        ArithOp::Sub => a - b,
        ArithOp::Mul => a * b,
        ArithOp::Div => a / b,
        ArithOp::Rem => a % b,
    })
}

/// The receiver of a string method: text, or missing for missing and null
/// (where JavaScript would throw).
fn receiver<'a>(out: &Out<'a>) -> Option<Cow<'a, [u8]>> {
    match out {
        Out::Missing | Out::Null => None,
        other => Some(text(other)),
    }
}

fn call<'a>(ctx: &'a Ctx<'a>, func: Func, target: Option<&'a C>, args: &'a [C]) -> Out<'a> {
    let arg = |i: usize| args.get(i).map_or(Out::Missing, |a| eval(a, ctx));
    let this = || target.map_or(Out::Missing, |t| eval(t, ctx));
    let string = |f: fn(&str) -> String| match receiver(&this()) {
        Some(t) => bounded(ctx, f(&String::from_utf8_lossy(&t)).into_bytes()),
        None => Out::Missing,
    };
    match func {
        Func::ToUpperCase => string(|s| s.to_uppercase()),
        Func::ToLowerCase => string(|s| s.to_lowercase()),
        Func::Trim => string(|s| s.trim().to_string()),
        Func::ToString => string(str::to_string),
        Func::Substring | Func::Slice => {
            let Some(t) = receiver(&this()) else {
                return Out::Missing;
            };
            let s = String::from_utf8_lossy(&t);
            let len = s.chars().count() as f64;
            let start = number(&arg(0));
            let end = if args.len() > 1 { number(&arg(1)) } else { len };
            let (a, b) = if func == Func::Slice {
                let at = |n: f64| {
                    let n = if n.is_nan() { 0.0 } else { n.trunc() };
                    if n < 0.0 {
                        (len + n).max(0.0)
                    } else {
                        n.min(len)
                    }
                };
                (at(start), at(end))
            } else {
                let at = |n: f64| {
                    if n.is_nan() {
                        0.0
                    } else {
                        n.trunc().clamp(0.0, len)
                    }
                };
                let (a, b) = (at(start), at(end));
                (a.min(b), a.max(b))
            };
            let out: String = s
                .chars()
                .skip(a as usize)
                .take((b - a).max(0.0) as usize)
                .collect();
            Out::Str(Cow::Owned(out.into_bytes()))
        }
        Func::Replace => {
            let Some(t) = receiver(&this()) else {
                return Out::Missing;
            };
            let with = text(&arg(1)).into_owned();
            let replaced: Vec<u8> = match args.first() {
                Some(C::Pattern(re, true)) => re.replace_all(&t, with.as_slice()).into_owned(),
                Some(C::Pattern(re, false)) => re.replace(&t, with.as_slice()).into_owned(),
                // A string pattern replaces its first occurrence, literally.
                _ => {
                    let needle = text(&arg(0));
                    match memchr::memmem::find(&t, &needle) {
                        Some(at) => {
                            let mut s = t[..at].to_vec();
                            s.extend_from_slice(&with);
                            s.extend_from_slice(&t[at + needle.len()..]);
                            s
                        }
                        None => t.into_owned(),
                    }
                }
            };
            bounded(ctx, replaced)
        }
        Func::Split => {
            let Some(t) = receiver(&this()) else {
                return Out::Missing;
            };
            let sep = text(&arg(0));
            let s = String::from_utf8_lossy(&t);
            let parts: Vec<Value> = if sep.is_empty() {
                s.chars().map(|c| Value::from(c.to_string())).collect()
            } else {
                let sep = String::from_utf8_lossy(&sep);
                s.split(sep.as_ref()).map(Value::from).collect()
            };
            Out::Value(Cow::Owned(Value::Array(parts)))
        }
        Func::IndexOf => {
            let Some(t) = receiver(&this()) else {
                return Out::Missing;
            };
            let needle = text(&arg(0));
            Out::Num(match memchr::memmem::find(&t, &needle) {
                Some(at) => String::from_utf8_lossy(&t[..at]).chars().count() as f64,
                None => -1.0,
            })
        }
        // JavaScript rounds halves up: Math.round(-2.5) is -2.
        Func::MathRound => Out::Num((number(&arg(0)) + 0.5).floor()),
        Func::MathFloor => Out::Num(number(&arg(0)).floor()),
        Func::MathCeil => Out::Num(number(&arg(0)).ceil()),
        Func::MathAbs => Out::Num(number(&arg(0)).abs()),
        Func::MathMin | Func::MathMax => {
            let mut acc = if func == Func::MathMin {
                f64::INFINITY
            } else {
                f64::NEG_INFINITY
            };
            for a in args {
                let n = number(&eval(a, ctx));
                if n.is_nan() {
                    return Out::Num(f64::NAN);
                }
                acc = if func == Func::MathMin {
                    acc.min(n)
                } else {
                    acc.max(n)
                };
            }
            Out::Num(acc)
        }
        Func::DateNow => Out::Num(ctx.now_ms),
        Func::ParseInt => Out::Num(parse_int(&text(&arg(0)))),
        Func::ParseFloat => Out::Num(parse_float(&text(&arg(0)))),
        Func::Number => Out::Num(number(&arg(0))),
        Func::String => match arg(0) {
            Out::Str(s) => Out::Str(s),
            other => Out::Str(Cow::Owned(text(&other).into_owned())),
        },
    }
}

/// JavaScript `parseInt`: the leading integer (`"42px"` is 42), hex with `0x`.
fn parse_int(t: &[u8]) -> f64 {
    let t = t.trim_ascii_start();
    let (neg, t) = match t.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, t),
    };
    let (radix, t) = match t {
        [b'0', b'x' | b'X', rest @ ..] => (16, rest),
        _ => (10, t),
    };
    let digits = t
        .iter()
        .take_while(|c| (**c as char).is_digit(radix))
        .count();
    if digits == 0 {
        return f64::NAN;
    }
    let n = t[..digits].iter().fold(0f64, |acc, c| {
        acc * f64::from(radix) + f64::from((*c as char).to_digit(radix).unwrap_or(0))
    });
    if neg { -n } else { n }
}

/// JavaScript `parseFloat`: the longest leading decimal number.
fn parse_float(t: &[u8]) -> f64 {
    let t = t.trim_ascii_start();
    if t.starts_with(b"Infinity") || t.starts_with(b"+Infinity") {
        return f64::INFINITY;
    }
    if t.starts_with(b"-Infinity") {
        return f64::NEG_INFINITY;
    }
    // The longest prefix that parses, looked for among the first 64 bytes
    // (no number is longer) so a hostile value costs nothing.
    let end = t
        .iter()
        .take(64)
        .take_while(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
        .count();
    let s = std::str::from_utf8(&t[..end]).unwrap_or("");
    (1..=end)
        .rev()
        .find_map(|n| s.get(..n).and_then(|p| p.parse::<f64>().ok()))
        .unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests;
