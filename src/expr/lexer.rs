//! Tokens of the filter language, each with the byte offset where it starts.

use super::FilterError;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    Regex { pattern: String, flags: String },
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Eq,
    Ne,
    StrictEq,
    StrictNe,
    Lt,
    Le,
    Gt,
    Ge,
    Match,
    NotMatch,
    And,
    Or,
    Not,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Question,
    Colon,
    Nullish,
    Eof,
}

impl Tok {
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Str(_) => "a string".into(),
            Tok::Num(_) => "a number".into(),
            Tok::Regex { .. } => "a regex".into(),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::LBracket => "`[`".into(),
            Tok::RBracket => "`]`".into(),
            Tok::Comma => "`,`".into(),
            Tok::Dot => "`.`".into(),
            Tok::Eq => "`==`".into(),
            Tok::Ne => "`!=`".into(),
            Tok::StrictEq => "`===`".into(),
            Tok::StrictNe => "`!==`".into(),
            Tok::Lt => "`<`".into(),
            Tok::Le => "`<=`".into(),
            Tok::Gt => "`>`".into(),
            Tok::Ge => "`>=`".into(),
            Tok::Match => "`=~`".into(),
            Tok::NotMatch => "`!~`".into(),
            Tok::And => "`&&`".into(),
            Tok::Or => "`||`".into(),
            Tok::Not => "`!`".into(),
            Tok::Plus => "`+`".into(),
            Tok::Minus => "`-`".into(),
            Tok::Star => "`*`".into(),
            Tok::Slash => "`/`".into(),
            Tok::Percent => "`%`".into(),
            Tok::Question => "`?`".into(),
            Tok::Colon => "`:`".into(),
            Tok::Nullish => "`??`".into(),
            Tok::Eof => "the end of the expression".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Token {
    pub tok: Tok,
    pub offset: usize,
}

pub fn lex(src: &str) -> Result<Vec<Token>, FilterError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let simple = |tok, len: usize, i: &mut usize| {
            *i += len;
            Token { tok, offset: start }
        };
        let next = b.get(i + 1).copied();
        let next2 = b.get(i + 2).copied();
        // As in JavaScript, `/` after a value divides and anywhere else
        // opens a regex; `-` after a value subtracts.
        let after_value = out.last().is_some_and(|t: &Token| {
            matches!(
                t.tok,
                Tok::Ident(_) | Tok::Str(_) | Tok::Num(_) | Tok::RParen | Tok::RBracket
            )
        });
        let token = match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'(' => simple(Tok::LParen, 1, &mut i),
            b')' => simple(Tok::RParen, 1, &mut i),
            b'[' => simple(Tok::LBracket, 1, &mut i),
            b']' => simple(Tok::RBracket, 1, &mut i),
            b',' => simple(Tok::Comma, 1, &mut i),
            b'.' if !next.is_some_and(|n| n.is_ascii_digit()) => simple(Tok::Dot, 1, &mut i),
            b'=' if next == Some(b'=') && next2 == Some(b'=') => simple(Tok::StrictEq, 3, &mut i),
            b'=' if next == Some(b'=') => simple(Tok::Eq, 2, &mut i),
            b'=' if next == Some(b'~') => simple(Tok::Match, 2, &mut i),
            b'=' => {
                return Err(FilterError::new(
                    start,
                    "`=` is assignment in JavaScript; compare with `==`",
                ));
            }
            b'!' if next == Some(b'=') && next2 == Some(b'=') => simple(Tok::StrictNe, 3, &mut i),
            b'!' if next == Some(b'=') => simple(Tok::Ne, 2, &mut i),
            b'!' if next == Some(b'~') => simple(Tok::NotMatch, 2, &mut i),
            b'!' => simple(Tok::Not, 1, &mut i),
            b'<' if next == Some(b'=') => simple(Tok::Le, 2, &mut i),
            b'<' => simple(Tok::Lt, 1, &mut i),
            b'>' if next == Some(b'=') => simple(Tok::Ge, 2, &mut i),
            b'>' => simple(Tok::Gt, 1, &mut i),
            b'&' if next == Some(b'&') => simple(Tok::And, 2, &mut i),
            b'|' if next == Some(b'|') => simple(Tok::Or, 2, &mut i),
            b'?' if next == Some(b'?') => simple(Tok::Nullish, 2, &mut i),
            b'?' => simple(Tok::Question, 1, &mut i),
            b':' => simple(Tok::Colon, 1, &mut i),
            b'+' => simple(Tok::Plus, 1, &mut i),
            b'*' => simple(Tok::Star, 1, &mut i),
            b'%' => simple(Tok::Percent, 1, &mut i),
            b'/' if after_value => simple(Tok::Slash, 1, &mut i),
            b'-' if after_value => simple(Tok::Minus, 1, &mut i),
            b'"' | b'\'' => {
                let (s, end) = lex_string(src, i)?;
                i = end;
                Token {
                    tok: Tok::Str(s),
                    offset: start,
                }
            }
            b'/' => {
                let (pattern, flags, end) = lex_regex(src, i)?;
                i = end;
                Token {
                    tok: Tok::Regex { pattern, flags },
                    offset: start,
                }
            }
            b'0'..=b'9' | b'.' => {
                let (n, end) = lex_number(src, i)?;
                i = end;
                Token {
                    tok: Tok::Num(n),
                    offset: start,
                }
            }
            b'-' if next.is_some_and(|n| n.is_ascii_digit() || n == b'.') => {
                let (n, end) = lex_number(src, i)?;
                i = end;
                Token {
                    tok: Tok::Num(n),
                    offset: start,
                }
            }
            b'-' => simple(Tok::Minus, 1, &mut i),
            c if c.is_ascii_alphabetic() || c == b'_' || c == b'$' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$')
                {
                    i += 1;
                }
                Token {
                    tok: Tok::Ident(src[start..i].to_string()),
                    offset: start,
                }
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                return Err(FilterError::new(
                    start,
                    format!("unexpected character `{ch}`"),
                ));
            }
        };
        out.push(token);
    }
    out.push(Token {
        tok: Tok::Eof,
        offset: src.len(),
    });
    Ok(out)
}

fn lex_string(src: &str, start: usize) -> Result<(String, usize), FilterError> {
    let b = src.as_bytes();
    let quote = b[start];
    let mut out = String::new();
    let mut i = start + 1;
    loop {
        let Some(&c) = b.get(i) else {
            return Err(FilterError::new(start, "unterminated string"));
        };
        if c == quote {
            return Ok((out, i + 1));
        }
        if c == b'\\' {
            let Some(&e) = b.get(i + 1) else {
                return Err(FilterError::new(i, "unterminated escape"));
            };
            match e {
                b'n' => out.push('\n'),
                b't' => out.push('\t'),
                b'r' => out.push('\r'),
                b'0' => out.push('\0'),
                b'\\' => out.push('\\'),
                b'\'' => out.push('\''),
                b'"' => out.push('"'),
                b'/' => out.push('/'),
                b'u' => {
                    let hex = src.get(i + 2..i + 6).ok_or_else(|| {
                        FilterError::new(i, "`\\u` needs four hexadecimal digits")
                    })?;
                    let code = u32::from_str_radix(hex, 16)
                        .map_err(|_| FilterError::new(i, "`\\u` needs four hexadecimal digits"))?;
                    let ch = char::from_u32(code)
                        .ok_or_else(|| FilterError::new(i, "`\\u` escape is not a character"))?;
                    out.push(ch);
                    i += 6;
                    continue;
                }
                _ => {
                    return Err(FilterError::new(
                        i,
                        format!("unknown escape `\\{}`", e as char),
                    ));
                }
            }
            i += 2;
            continue;
        }
        // Copy one whole UTF-8 character.
        let ch = src[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8();
    }
}

fn lex_regex(src: &str, start: usize) -> Result<(String, String, usize), FilterError> {
    let b = src.as_bytes();
    let mut i = start + 1;
    let mut pattern = String::new();
    let mut in_class = false;
    loop {
        let Some(&c) = b.get(i) else {
            return Err(FilterError::new(
                start,
                "unterminated regex: expected a closing `/`",
            ));
        };
        match c {
            b'\\' if b.get(i + 1) == Some(&b'/') => {
                // `\/` is how JavaScript writes a slash inside a regex literal.
                pattern.push('/');
                i += 2;
                continue;
            }
            b'\\' => {
                pattern.push('\\');
                i += 1;
                if let Some(ch) = src[i..].chars().next() {
                    pattern.push(ch);
                    i += ch.len_utf8();
                }
                continue;
            }
            b'[' => in_class = true,
            b']' => in_class = false,
            b'/' if !in_class => break,
            _ => {}
        }
        let ch = src[i..].chars().next().unwrap_or('\u{fffd}');
        pattern.push(ch);
        i += ch.len_utf8();
    }
    i += 1;
    let flags_start = i;
    while i < b.len() && b[i].is_ascii_alphabetic() {
        i += 1;
    }
    Ok((pattern, src[flags_start..i].to_string(), i))
}

fn lex_number(src: &str, start: usize) -> Result<(f64, usize), FilterError> {
    let b = src.as_bytes();
    let mut i = start;
    if b[i] == b'-' {
        i += 1;
    }
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.' || b[i] == b'_') {
        i += 1;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    let text: String = src[start..i].chars().filter(|&c| c != '_').collect();
    let n = text
        .parse::<f64>()
        .map_err(|_| FilterError::new(start, format!("`{}` is not a number", &src[start..i])))?;
    if i < b.len() && (b[i].is_ascii_alphabetic() || b[i] == b'_') {
        return Err(FilterError::new(
            i,
            "a number must not be followed by letters",
        ));
    }
    Ok((n, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        lex(s).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn lexes_operators_and_literals() {
        assert_eq!(
            toks(r#"a.b >= -5.5 && c === 'x\'y' || d =~ /a\/b/i"#),
            vec![
                Tok::Ident("a".into()),
                Tok::Dot,
                Tok::Ident("b".into()),
                Tok::Ge,
                Tok::Num(-5.5),
                Tok::And,
                Tok::Ident("c".into()),
                Tok::StrictEq,
                Tok::Str("x'y".into()),
                Tok::Or,
                Tok::Ident("d".into()),
                Tok::Match,
                Tok::Regex {
                    pattern: "a/b".into(),
                    flags: "i".into()
                },
                Tok::Eof
            ]
        );
    }

    #[test]
    fn reports_offsets() {
        let e = lex("a == 'open").unwrap_err();
        assert_eq!(e.offset, 5);
        let e = lex("a = 1").unwrap_err();
        assert_eq!(e.offset, 2);
        let e = lex("a == 1 # b").unwrap_err();
        assert_eq!(e.offset, 7);
    }

    #[test]
    fn slash_and_minus_read_by_what_precedes_them() {
        assert_eq!(
            toks("a/2-1 =~ /x/"),
            vec![
                Tok::Ident("a".into()),
                Tok::Slash,
                Tok::Num(2.0),
                Tok::Minus,
                Tok::Num(1.0),
                Tok::Match,
                Tok::Regex {
                    pattern: "x".into(),
                    flags: "".into()
                },
                Tok::Eof
            ]
        );
        assert_eq!(
            toks("-a ?? -1"),
            vec![
                Tok::Minus,
                Tok::Ident("a".into()),
                Tok::Nullish,
                Tok::Num(-1.0),
                Tok::Eof
            ]
        );
    }
}
