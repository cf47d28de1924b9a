//! Recursive-descent parser from tokens to an AST, JavaScript precedence:
//! unary `!` and `-` bind tightest, then `* / %`, `+ -`, comparisons, `&&`,
//! `||`, `??` and the conditional `? :`. Filters (routes, `drop`) compare;
//! the arithmetic, `? :` and value methods are for `eval`, which computes.
//!
//! Nesting (`(`, `!`) is limited to `MAX_NESTING` levels: a filter comes
//! from the API too (`GET /api/v1/tap?filter=`), and an unbounded chain of
//! `!` or `(` would recurse until the stack overflows. Every later pass
//! (compile, evaluate, drop) recurses over the AST, so bounding it here
//! bounds them all.

use super::FilterError;
use super::lexer::{Tok, Token, lex};

#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    StrictEq,
    StrictNe,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    StartsWith,
    EndsWith,
    Includes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

/// A function that computes a value: a method of its receiver
/// (`message.toUpperCase()`) or a global (`Math.round(x)`, `Date.now()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    ToUpperCase,
    ToLowerCase,
    Trim,
    Substring,
    Slice,
    Replace,
    Split,
    IndexOf,
    ToString,
    MathRound,
    MathFloor,
    MathCeil,
    MathAbs,
    MathMin,
    MathMax,
    DateNow,
    ParseInt,
    ParseFloat,
    String,
    Number,
}

impl Func {
    fn method(name: &str) -> Option<Func> {
        Some(match name {
            "toUpperCase" => Func::ToUpperCase,
            "toLowerCase" => Func::ToLowerCase,
            "trim" => Func::Trim,
            "substring" => Func::Substring,
            "slice" => Func::Slice,
            "replace" => Func::Replace,
            "split" => Func::Split,
            "indexOf" => Func::IndexOf,
            "toString" => Func::ToString,
            _ => return None,
        })
    }

    fn global(object: &str, name: &str) -> Option<Func> {
        Some(match (object, name) {
            ("Math", "round") => Func::MathRound,
            ("Math", "floor") => Func::MathFloor,
            ("Math", "ceil") => Func::MathCeil,
            ("Math", "abs") => Func::MathAbs,
            ("Math", "min") => Func::MathMin,
            ("Math", "max") => Func::MathMax,
            ("Date", "now") => Func::DateNow,
            ("", "parseInt") => Func::ParseInt,
            ("", "parseFloat") => Func::ParseFloat,
            ("", "String") => Func::String,
            ("", "Number") => Func::Number,
            _ => return None,
        })
    }

    /// How many arguments it takes, at least and at most.
    pub fn arity(self) -> (usize, usize) {
        match self {
            Func::ToUpperCase | Func::ToLowerCase | Func::Trim | Func::ToString => (0, 0),
            Func::DateNow => (0, 0),
            Func::Substring | Func::Slice => (1, 2),
            Func::Replace => (2, 2),
            Func::Split | Func::IndexOf => (1, 1),
            Func::MathRound | Func::MathFloor | Func::MathCeil | Func::MathAbs => (1, 1),
            Func::MathMin | Func::MathMax => (1, 16),
            Func::ParseInt | Func::ParseFloat | Func::String | Func::Number => (1, 1),
        }
    }

    pub fn is_method(self) -> bool {
        matches!(
            self,
            Func::ToUpperCase
                | Func::ToLowerCase
                | Func::Trim
                | Func::Substring
                | Func::Slice
                | Func::Replace
                | Func::Split
                | Func::IndexOf
                | Func::ToString
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Ast {
    Lit(Lit),
    Path(Vec<Segment>),
    Raw,
    Not(Box<Ast>),
    And(Vec<Ast>),
    Or(Vec<Ast>),
    Cmp(CmpOp, Box<Ast>, Box<Ast>),
    Regex {
        target: Box<Ast>,
        pattern: String,
        flags: String,
        negate: bool,
        offset: usize,
    },
    In(Box<Ast>, Vec<Lit>),
    Method(Box<Ast>, Method, Lit),
    Exists(Vec<Segment>),
    /// From here on, what computes a value rather than compares; each
    /// carries its offset so a filter can refuse it where it is written.
    Arith {
        op: ArithOp,
        lhs: Box<Ast>,
        rhs: Box<Ast>,
        offset: usize,
    },
    Neg(Box<Ast>, usize),
    Cond {
        test: Box<Ast>,
        then: Box<Ast>,
        other: Box<Ast>,
        offset: usize,
    },
    /// `a ?? b`: `a` unless it is missing or null.
    Nullish(Box<Ast>, Box<Ast>, usize),
    Call {
        func: Func,
        target: Option<Box<Ast>>,
        args: Vec<Ast>,
        offset: usize,
    },
    /// A regex literal given to a method (`replace(/\d/g, "#")`).
    Pattern {
        pattern: String,
        flags: String,
        offset: usize,
    },
}

/// How deeply `(` and `!` may nest. Real filters use a handful.
pub const MAX_NESTING: usize = 64;
/// The longest filter: far beyond any written by hand.
pub const MAX_BYTES: usize = 64 * 1024;
/// How many binary operators and conditionals one expression may hold:
/// `1+1+1+…` nests to the left, and evaluation recurses as deep as it does.
pub const MAX_OPERATORS: usize = 1024;

pub fn parse(src: &str) -> Result<Ast, FilterError> {
    if src.len() > MAX_BYTES {
        return Err(FilterError::new(
            0,
            format!("longer than {} KiB", MAX_BYTES / 1024),
        ));
    }
    let tokens = lex(src)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        depth: 0,
        operators: 0,
    };
    if p.peek() == &Tok::Eof {
        return Err(FilterError::new(
            0,
            "empty filter: write `true` to match every event",
        ));
    }
    let ast = p.conditional()?;
    if p.peek() != &Tok::Eof {
        return Err(p.unexpected("an operator or the end of the expression"));
    }
    Ok(ast)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    /// `(`, `!`, `-` and calls open around the current position.
    depth: usize,
    /// Binary operators and conditionals so far (`MAX_OPERATORS`).
    operators: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.tokens[self.pos.min(self.tokens.len() - 1)].tok
    }

    fn offset(&self) -> usize {
        self.tokens[self.pos.min(self.tokens.len() - 1)].offset
    }

    fn bump(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn unexpected(&self, wanted: &str) -> FilterError {
        FilterError::new(
            self.offset(),
            format!("expected {wanted}, found {}", self.peek().describe()),
        )
    }

    fn expect(&mut self, tok: Tok, wanted: &str) -> Result<(), FilterError> {
        if *self.peek() == tok {
            self.bump();
            Ok(())
        } else {
            Err(self.unexpected(wanted))
        }
    }

    fn count_operator(&mut self) -> Result<(), FilterError> {
        self.operators += 1;
        if self.operators > MAX_OPERATORS {
            return Err(FilterError::new(
                self.offset(),
                format!("more than {MAX_OPERATORS} operators in one expression"),
            ));
        }
        Ok(())
    }

    fn conditional(&mut self) -> Result<Ast, FilterError> {
        let test = self.nullish()?;
        if self.peek() != &Tok::Question {
            return Ok(test);
        }
        let offset = self.offset();
        self.count_operator()?;
        self.nest()?;
        self.bump();
        let then = self.conditional()?;
        self.expect(Tok::Colon, "`:` of the conditional")?;
        let other = self.conditional()?;
        self.depth -= 1;
        Ok(Ast::Cond {
            test: Box::new(test),
            then: Box::new(then),
            other: Box::new(other),
            offset,
        })
    }

    fn nullish(&mut self) -> Result<Ast, FilterError> {
        let mut node = self.or()?;
        while self.peek() == &Tok::Nullish {
            let offset = self.offset();
            self.count_operator()?;
            self.bump();
            let rhs = self.or()?;
            node = Ast::Nullish(Box::new(node), Box::new(rhs), offset);
        }
        Ok(node)
    }

    fn or(&mut self) -> Result<Ast, FilterError> {
        let mut items = vec![self.and()?];
        while self.peek() == &Tok::Or {
            self.bump();
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Ast::Or(items)
        })
    }

    fn and(&mut self) -> Result<Ast, FilterError> {
        let mut items = vec![self.comparison()?];
        while self.peek() == &Tok::And {
            self.bump();
            items.push(self.comparison()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Ast::And(items)
        })
    }

    fn comparison(&mut self) -> Result<Ast, FilterError> {
        let lhs = self.additive()?;
        let op = match self.peek() {
            Tok::Eq => CmpOp::Eq,
            Tok::Ne => CmpOp::Ne,
            Tok::StrictEq => CmpOp::StrictEq,
            Tok::StrictNe => CmpOp::StrictNe,
            Tok::Lt => CmpOp::Lt,
            Tok::Le => CmpOp::Le,
            Tok::Gt => CmpOp::Gt,
            Tok::Ge => CmpOp::Ge,
            Tok::Match | Tok::NotMatch => {
                let negate = self.bump() == Tok::NotMatch;
                let offset = self.offset();
                return match self.bump() {
                    Tok::Regex { pattern, flags } => Ok(Ast::Regex {
                        target: Box::new(lhs),
                        pattern,
                        flags,
                        negate,
                        offset,
                    }),
                    other => Err(FilterError::new(
                        offset,
                        format!(
                            "expected a regex literal such as /^5\\d\\d$/, found {}",
                            other.describe()
                        ),
                    )),
                };
            }
            Tok::Ident(kw) if kw == "in" => {
                self.bump();
                let list = self.literal_list()?;
                return Ok(Ast::In(Box::new(lhs), list));
            }
            _ => return Ok(lhs),
        };
        self.bump();
        let rhs = self.additive()?;
        if matches!(
            self.peek(),
            Tok::Eq
                | Tok::Ne
                | Tok::StrictEq
                | Tok::StrictNe
                | Tok::Lt
                | Tok::Le
                | Tok::Gt
                | Tok::Ge
        ) {
            return Err(FilterError::new(
                self.offset(),
                "comparisons do not chain; join them with `&&`",
            ));
        }
        Ok(Ast::Cmp(op, Box::new(lhs), Box::new(rhs)))
    }

    /// Enter one more level of `(` or `!`, or refuse the filter.
    fn nest(&mut self) -> Result<(), FilterError> {
        if self.depth >= MAX_NESTING {
            return Err(FilterError::new(
                self.offset(),
                format!("nested more than {MAX_NESTING} levels deep (`(` and `!`)"),
            ));
        }
        self.depth += 1;
        Ok(())
    }

    fn additive(&mut self) -> Result<Ast, FilterError> {
        let mut node = self.multiplicative()?;
        loop {
            let op = match self.peek() {
                Tok::Plus => ArithOp::Add,
                Tok::Minus => ArithOp::Sub,
                _ => return Ok(node),
            };
            node = self.binary(op, node, Self::multiplicative)?;
        }
    }

    fn multiplicative(&mut self) -> Result<Ast, FilterError> {
        let mut node = self.unary()?;
        loop {
            let op = match self.peek() {
                Tok::Star => ArithOp::Mul,
                Tok::Slash => ArithOp::Div,
                Tok::Percent => ArithOp::Rem,
                _ => return Ok(node),
            };
            node = self.binary(op, node, Self::unary)?;
        }
    }

    fn binary(
        &mut self,
        op: ArithOp,
        lhs: Ast,
        operand: fn(&mut Self) -> Result<Ast, FilterError>,
    ) -> Result<Ast, FilterError> {
        let offset = self.offset();
        self.count_operator()?;
        self.bump();
        let rhs = operand(self)?;
        Ok(Ast::Arith {
            op,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
            offset,
        })
    }

    fn unary(&mut self) -> Result<Ast, FilterError> {
        let offset = self.offset();
        let negate = match self.peek() {
            Tok::Not => false,
            Tok::Minus => true,
            _ => return self.postfix(),
        };
        self.nest()?;
        self.bump();
        let inner = self.unary()?;
        self.depth -= 1;
        Ok(if negate {
            Ast::Neg(Box::new(inner), offset)
        } else {
            Ast::Not(Box::new(inner))
        })
    }

    /// `( args )` of a call, the `(` next.
    fn arguments(&mut self, func: Func, offset: usize) -> Result<Vec<Ast>, FilterError> {
        self.nest()?;
        self.expect(Tok::LParen, "`(`")?;
        let mut args = Vec::new();
        while self.peek() != &Tok::RParen {
            let arg = match self.peek().clone() {
                Tok::Regex { pattern, flags } if func == Func::Replace && args.is_empty() => {
                    let offset = self.offset();
                    self.bump();
                    Ast::Pattern {
                        pattern,
                        flags,
                        offset,
                    }
                }
                _ => self.conditional()?,
            };
            args.push(arg);
            if self.peek() == &Tok::Comma {
                self.bump();
            } else if self.peek() != &Tok::RParen {
                return Err(self.unexpected("`,` or `)`"));
            }
        }
        self.bump();
        self.depth -= 1;
        let (min, max) = func.arity();
        if args.len() < min || args.len() > max {
            let wanted = if min == max {
                format!("{min}")
            } else {
                format!("{min} to {max}")
            };
            return Err(FilterError::new(
                offset,
                format!("takes {wanted} arguments, given {}", args.len()),
            ));
        }
        Ok(args)
    }

    fn postfix(&mut self) -> Result<Ast, FilterError> {
        let start = self.offset();
        let mut node = self.primary()?;
        loop {
            match self.peek() {
                Tok::Dot => {
                    self.bump();
                    let name_offset = self.offset();
                    let Tok::Ident(name) = self.bump() else {
                        return Err(FilterError::new(
                            name_offset,
                            "expected a field name after `.`",
                        ));
                    };
                    if self.peek() == &Tok::LParen {
                        let global = match &node {
                            Ast::Path(p) => match p.as_slice() {
                                [Segment::Key(object)] => Func::global(object, &name),
                                _ => None,
                            },
                            _ => None,
                        };
                        if let Some(func) = global {
                            let args = self.arguments(func, name_offset)?;
                            node = Ast::Call {
                                func,
                                target: None,
                                args,
                                offset: name_offset,
                            };
                            continue;
                        }
                        if let Some(func) = Func::method(&name) {
                            let args = self.arguments(func, name_offset)?;
                            node = Ast::Call {
                                func,
                                target: Some(Box::new(node)),
                                args,
                                offset: name_offset,
                            };
                            continue;
                        }
                        let method = match name.as_str() {
                            "startsWith" => Method::StartsWith,
                            "endsWith" => Method::EndsWith,
                            "includes" => Method::Includes,
                            _ => {
                                return Err(FilterError::new(
                                    name_offset,
                                    format!(
                                        "unknown method `{name}`: filters have startsWith, endsWith and includes; eval also toUpperCase, toLowerCase, trim, substring, slice, replace, split, indexOf and toString"
                                    ),
                                ));
                            }
                        };
                        self.bump();
                        let arg_offset = self.offset();
                        let arg = self.literal()?;
                        if method != Method::Includes && !matches!(arg, Lit::Str(_)) {
                            return Err(FilterError::new(
                                arg_offset,
                                format!("`{name}` takes a string"),
                            ));
                        }
                        self.expect(Tok::RParen, "`)`")?;
                        node = Ast::Method(Box::new(node), method, arg);
                    } else {
                        node = self.extend_path(node, Segment::Key(name), start)?;
                    }
                }
                Tok::LBracket => {
                    self.bump();
                    let offset = self.offset();
                    let seg = match self.bump() {
                        Tok::Num(n) if n >= 0.0 && n.fract() == 0.0 && n < 1e9 => {
                            Segment::Index(n as usize)
                        }
                        Tok::Str(s) => Segment::Key(s),
                        _ => {
                            return Err(FilterError::new(
                                offset,
                                "expected an array index or a quoted field name inside `[ ]`",
                            ));
                        }
                    };
                    self.expect(Tok::RBracket, "`]`")?;
                    node = self.extend_path(node, seg, start)?;
                }
                _ => return Ok(node),
            }
        }
    }

    fn extend_path(&self, node: Ast, seg: Segment, start: usize) -> Result<Ast, FilterError> {
        match node {
            Ast::Path(mut segs) => {
                segs.push(seg);
                Ok(Ast::Path(segs))
            }
            Ast::Raw => Err(FilterError::new(
                start,
                "`_raw` is the whole event as text and has no fields",
            )),
            _ => Err(FilterError::new(start, "only field paths have fields")),
        }
    }

    fn primary(&mut self) -> Result<Ast, FilterError> {
        let offset = self.offset();
        match self.peek().clone() {
            Tok::LParen => {
                self.nest()?;
                self.bump();
                let inner = self.conditional()?;
                self.expect(Tok::RParen, "`)`")?;
                self.depth -= 1;
                Ok(inner)
            }
            Tok::Str(_) | Tok::Num(_) => Ok(Ast::Lit(self.literal()?)),
            Tok::Ident(name) => {
                self.bump();
                match name.as_str() {
                    "true" => Ok(Ast::Lit(Lit::Bool(true))),
                    "false" => Ok(Ast::Lit(Lit::Bool(false))),
                    "null" => Ok(Ast::Lit(Lit::Null)),
                    "_raw" => Ok(Ast::Raw),
                    "exists" if self.peek() == &Tok::LParen => {
                        self.bump();
                        let path_offset = self.offset();
                        let path = match self.postfix()? {
                            Ast::Path(p) => p,
                            _ => {
                                return Err(FilterError::new(
                                    path_offset,
                                    "`exists` takes a field path, such as exists(kube.namespace)",
                                ));
                            }
                        };
                        self.expect(Tok::RParen, "`)`")?;
                        Ok(Ast::Exists(path))
                    }
                    "in" => Err(FilterError::new(offset, "`in` needs a value on its left")),
                    _ => match Func::global("", &name) {
                        Some(func) if self.peek() == &Tok::LParen => {
                            let args = self.arguments(func, offset)?;
                            Ok(Ast::Call {
                                func,
                                target: None,
                                args,
                                offset,
                            })
                        }
                        _ => Ok(Ast::Path(vec![Segment::Key(name)])),
                    },
                }
            }
            Tok::Regex { .. } => Err(FilterError::new(
                offset,
                "a regex must follow `=~` or `!~`, as in `message =~ /timeout/`",
            )),
            _ => Err(self.unexpected("a field, a literal, `!` or `(`")),
        }
    }

    fn literal(&mut self) -> Result<Lit, FilterError> {
        let offset = self.offset();
        match self.bump() {
            Tok::Str(s) => Ok(Lit::Str(s)),
            Tok::Num(n) => Ok(Lit::Num(n)),
            Tok::Ident(i) if i == "true" => Ok(Lit::Bool(true)),
            Tok::Ident(i) if i == "false" => Ok(Lit::Bool(false)),
            Tok::Ident(i) if i == "null" => Ok(Lit::Null),
            other => Err(FilterError::new(
                offset,
                format!("expected a literal, found {}", other.describe()),
            )),
        }
    }

    fn literal_list(&mut self) -> Result<Vec<Lit>, FilterError> {
        self.expect(Tok::LBracket, "`[` starting a list of literals")?;
        let mut items = Vec::new();
        if self.peek() == &Tok::RBracket {
            self.bump();
            return Ok(items);
        }
        loop {
            items.push(self.literal()?);
            match self.peek() {
                Tok::Comma => {
                    self.bump();
                    // A trailing comma is valid JavaScript.
                    if self.peek() == &Tok::RBracket {
                        self.bump();
                        return Ok(items);
                    }
                }
                Tok::RBracket => {
                    self.bump();
                    return Ok(items);
                }
                _ => return Err(self.unexpected("`,` or `]`")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &[&str]) -> Ast {
        Ast::Path(p.iter().map(|s| Segment::Key(s.to_string())).collect())
    }

    #[test]
    fn precedence() {
        let ast = parse("a == 1 || b && !c").unwrap();
        assert_eq!(
            ast,
            Ast::Or(vec![
                Ast::Cmp(
                    CmpOp::Eq,
                    Box::new(path(&["a"])),
                    Box::new(Ast::Lit(Lit::Num(1.0)))
                ),
                Ast::And(vec![path(&["b"]), Ast::Not(Box::new(path(&["c"])))]),
            ])
        );
    }

    #[test]
    fn paths_methods_and_lists() {
        assert_eq!(
            parse("tags[0].startsWith('x')").unwrap(),
            Ast::Method(
                Box::new(Ast::Path(vec![
                    Segment::Key("tags".into()),
                    Segment::Index(0)
                ])),
                Method::StartsWith,
                Lit::Str("x".into())
            )
        );
        assert_eq!(
            parse("a['b c'] in ['x', 2,]").unwrap(),
            Ast::In(
                Box::new(Ast::Path(vec![
                    Segment::Key("a".into()),
                    Segment::Key("b c".into())
                ])),
                vec![Lit::Str("x".into()), Lit::Num(2.0)]
            )
        );
        assert_eq!(
            parse("exists(kube.namespace)").unwrap(),
            Ast::Exists(vec![
                Segment::Key("kube".into()),
                Segment::Key("namespace".into())
            ])
        );
    }

    #[test]
    fn nesting_is_bounded_not_a_stack_overflow() {
        let deep = format!("{}x{}", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
        assert!(parse(&deep).is_ok());
        let nots = format!("{}x", "!".repeat(MAX_NESTING));
        assert!(parse(&nots).is_ok());
        for hostile in [
            format!("{}x", "!".repeat(2000)),
            format!("{}x", "(".repeat(60_000)),
            format!("{}x", "!(".repeat(30_000)),
        ] {
            let err = parse(&hostile).unwrap_err();
            assert!(err.message.contains("nested more than"), "{}", err.message);
        }
        let long = format!("a == '{}'", "x".repeat(MAX_BYTES));
        assert!(parse(&long).unwrap_err().message.contains("longer than"));
    }

    #[test]
    fn errors_have_offsets() {
        let cases = [
            ("level == ", 9),
            ("level == 'a' &&", 15),
            ("(a == 1", 7),
            ("a.b(1)", 2),
            ("a == 1 b", 7),
            ("a ? 1", 5),
            ("Math.round(1, 2)", 5),
            ("a.trim(1)", 2),
            ("a < b < c", 6),
            ("_raw.x", 0),
            ("x =~ 'a'", 5),
            ("", 0),
        ];
        for (src, offset) in cases {
            let err = parse(src).unwrap_err();
            assert_eq!(err.offset, offset, "{src}: {}", err.message);
        }
    }
}
