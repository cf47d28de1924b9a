//! Reporting every mistake in a file at once, and in the user's words.
//!
//! serde stops at the first error. To find the next, the entry that failed
//! is blanked out of the text — replaced by spaces, so every other line and
//! column stays where it was — and the file parsed again, until it parses
//! or a limit is reached. An entry is what starts on the error's line
//! (`key: value`, with the block nested under it); a missing field blanks
//! the mapping that lacks it. Checks that run on the parsed rest must not
//! then complain about what was blanked (`Recovery::removed`).

use std::collections::BTreeSet;

use super::Loc;

/// At most this many parse errors are reported (and the file parsed as many
/// times): a file that is not YAML at all should not take long to refuse.
pub const MAX_PARSE_ERRORS: usize = 50;

/// What blanking an error's entry did.
#[derive(Debug, PartialEq, Eq)]
pub enum Cut {
    /// Blanked: parse again; the error is the user's.
    Done,
    /// Blanked, and the error only followed from an earlier blanking (a
    /// field "missing" because its bad value was blanked): not reported.
    Echo,
    /// Nothing left to blank there: stop.
    Nothing,
}

/// The text with failed entries blanked out.
pub struct Recovery {
    original: Vec<String>,
    lines: Vec<String>,
    /// 1-based lines something was blanked on.
    cut: BTreeSet<u64>,
}

impl Recovery {
    pub fn new(text: &str) -> Self {
        let lines: Vec<String> = text.split('\n').map(str::to_string).collect();
        Recovery {
            original: lines.clone(),
            lines,
            cut: BTreeSet::new(),
        }
    }

    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    pub fn anything_cut(&self) -> bool {
        !self.cut.is_empty()
    }

    pub fn was_cut(&self, line: u64) -> bool {
        self.cut.contains(&line)
    }

    /// Whether a later check's message is about something blanked out (a
    /// component id or name written on a blanked line): it would only
    /// repeat the parse error, or complain that the blanked thing is
    /// missing.
    pub fn concerns_cut(&self, message: &str) -> bool {
        if !self.anything_cut() {
            return false;
        }
        if message.starts_with("no sources defined")
            || message.starts_with("no destinations defined")
            || message.starts_with("the configuration is empty")
        {
            return true;
        }
        self.cut.iter().any(|&l| {
            let line = self.original.get(l as usize - 1).map_or("", String::as_str);
            line.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-' || c == '.'))
                .filter(|w| !w.is_empty())
                .any(|w| message.contains(&format!("`{w}`")))
        })
    }

    /// Blank the component whose `type` is at `loc` (an unknown type).
    pub fn cut_component(&mut self, loc: Loc) {
        if let Some(line) = self.uncut_line(loc) {
            self.cut_mapping_of(line);
        }
    }

    /// Blank the entry that failed at `loc` so parsing can go on.
    pub fn cut_at(&mut self, loc: Loc, message: &str) -> Cut {
        let Some(line) = self.uncut_line(loc) else {
            return Cut::Nothing;
        };
        // A missing field is the fault of the mapping that lacks it.
        if message.contains("missing field") {
            return self.cut_mapping_of(line);
        }
        // A key whose whole block was blanked is left with no value.
        let end = self.block_end(line, entry_start(&self.lines[line]));
        let emptied = end > line + 1
            && (line + 1..end).all(|l| is_blank(&self.lines[l]) || self.was_cut(l as u64 + 1));
        outcome(self.cut_entry(line), emptied)
    }

    /// `loc`'s 0-based line, if it is in the text and not blanked yet.
    fn uncut_line(&self, loc: Loc) -> Option<usize> {
        let line = usize::try_from(loc.line).ok()?.checked_sub(1)?;
        (line < self.lines.len() && !self.was_cut(loc.line)).then_some(line)
    }

    /// Blank the mapping holding line `line`'s entry: an echo if an entry
    /// of it was blanked before (a field "missing" because its bad value
    /// was blanked).
    fn cut_mapping_of(&mut self, line: usize) -> Cut {
        let parent = self.parent_of(line);
        let end = self.block_end(parent, entry_start(&self.lines[parent]));
        let echo = (parent..end).any(|l| self.was_cut(l as u64 + 1));
        outcome(self.cut_entry(parent), echo)
    }

    /// The line of the mapping that holds line `line`'s entry: the same
    /// line in flow style (`id: { ... }`), else the nearest line above
    /// indented less.
    fn parent_of(&self, line: usize) -> usize {
        let text = &self.lines[line];
        if text.contains('{') {
            return line;
        }
        let indent = indentation(text);
        (0..line)
            .rev()
            .find(|&l| {
                let t = &self.lines[l];
                !is_blank(t) && indentation(t) < indent
            })
            .unwrap_or(line)
    }

    /// Blank the entry starting on `line` (after any `- ` item markers) and
    /// every following line nested deeper than it.
    fn cut_entry(&mut self, line: usize) -> bool {
        let text = &self.lines[line];
        let start = entry_start(text);
        if start >= text.len() || is_blank(text) {
            return false;
        }
        let block_end = self.block_end(line, start);
        // An item with nothing left (`- ` and no sibling keys under it)
        // goes whole, or it would be a null item in the list.
        let prefix_is_markers = text[..start].trim().chars().all(|c| c == '-');
        let siblings = self.lines[block_end..]
            .iter()
            .find(|t| !is_blank(t))
            .is_some_and(|t| indentation(t) == start && !t.trim_start().starts_with('-'));
        let from = if prefix_is_markers && !siblings {
            indentation(text)
        } else {
            start
        };
        blank(&mut self.lines[line], from);
        self.cut.insert(line as u64 + 1);
        for l in line + 1..block_end {
            blank(&mut self.lines[l], 0);
            self.cut.insert(l as u64 + 1);
        }
        true
    }

    /// The first line after `line` that is not part of its entry (which
    /// starts at column `start`): nested deeper, or a block list written at
    /// the key's own indentation (`routes:` then `- name: ...`).
    fn block_end(&self, line: usize, start: usize) -> usize {
        // Read as written: what was blanked since still has its place.
        let key_only = self.original[line].trim_end().ends_with(':');
        let mut end = line + 1;
        while end < self.original.len() {
            let t = &self.original[end];
            if is_blank(t) {
                end += 1;
                continue;
            }
            let i = indentation(t);
            if i > start || (key_only && i == start && t.trim_start().starts_with('-')) {
                end += 1;
            } else {
                break;
            }
        }
        // Trailing blank lines (blank as written, not blanked) belong to
        // no one.
        while end > line + 1 && is_blank(&self.original[end - 1]) {
            end -= 1;
        }
        end
    }
}

fn outcome(cut: bool, echo: bool) -> Cut {
    match (cut, echo) {
        (false, _) => Cut::Nothing,
        (true, true) => Cut::Echo,
        (true, false) => Cut::Done,
    }
}

fn indentation(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_blank(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

/// Where the entry on a line starts: past the indentation and any `- `
/// list markers.
fn entry_start(line: &str) -> usize {
    let mut i = indentation(line);
    let bytes = line.as_bytes();
    while i < bytes.len() && bytes[i] == b'-' && bytes.get(i + 1).is_none_or(|b| *b == b' ') {
        i += 1;
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
    }
    i
}

/// Spaces from byte `from` on (on a character boundary: the entry starts
/// after ASCII indentation and markers).
fn blank(line: &mut String, from: usize) {
    let from = (0..=from.min(line.len()))
        .rev()
        .find(|&i| line.is_char_boundary(i))
        .unwrap_or(0);
    let width = line[from..].chars().count();
    line.truncate(from);
    line.extend(std::iter::repeat_n(' ', width));
}

/// A serde or YAML message as a user would say it: no Rust type names, no
/// library settings, and the fix where there is an obvious one. `value` is
/// the text at the error's position, for messages about it.
pub fn user_words(message: &str, value: Option<&str>) -> String {
    // `Spanned` fields show up in the key path as `.value`.
    let message = message.replace(".value:", ":");
    let (path, what) = match message.split_once(": ") {
        Some((p, w)) if !p.contains(' ') => (Some(p), w),
        _ => (None, message.as_str()),
    };
    let what = if let Some(key) = what.strip_prefix("duplicate mapping key: ") {
        let key = key.split(',').next().unwrap_or(key);
        format!("`{key}` is given twice here; each key may appear once")
    } else if what.starts_with("invalid socket address syntax") {
        address_hint(value)
    } else {
        let plain = match what {
            "invalid u64" | "invalid u32" | "invalid u16" | "invalid u8" | "invalid usize" => {
                "expected a whole number, 0 or more"
            }
            "invalid i64" | "invalid i32" => "expected a whole number",
            "invalid f64" | "invalid f32" => "expected a number",
            "invalid bool" => "expected true or false",
            "expected mapping start" => {
                "expected a mapping (`key: value` lines, or `{ key: value }`)"
            }
            "expected sequence start" => "expected a list (`- item` lines, or `[a, b]`)",
            other => other,
        };
        match value {
            Some(v) if plain != what && !v.is_empty() => format!("{plain}, not `{v}`"),
            _ => plain.to_string(),
        }
    };
    match path {
        Some(p) => format!("{p}: {what}"),
        None => what,
    }
}

/// What to write instead of an address that is not `IP:PORT`.
fn address_hint(value: Option<&str>) -> String {
    let v = value.unwrap_or("");
    let port = v.rsplit_once(':').map_or(v, |(_, p)| p);
    let fix = if let Ok(port) = port.parse::<u16>() {
        if v.contains(':') {
            format!(
                " (host names are not looked up: write 127.0.0.1:{port} for this host, 0.0.0.0:{port} for every interface)"
            )
        } else {
            format!(
                " (a port alone: write 0.0.0.0:{port} for every interface, 127.0.0.1:{port} for this host)"
            )
        }
    } else {
        String::new()
    };
    if v.is_empty() {
        format!("expected an address as IP:PORT{fix}")
    } else {
        format!("expected an address as IP:PORT, not `{v}`{fix}")
    }
}

/// The scalar written at `loc` in `text`: up to the end of the line, a
/// `,`, `}` or `]` (flow style) or a comment; quotes removed.
pub fn value_at(text: &str, loc: Loc) -> Option<String> {
    let line = text
        .split('\n')
        .nth(usize::try_from(loc.line).ok()?.checked_sub(1)?)?;
    let col = usize::try_from(loc.column).ok()?.checked_sub(1)?;
    let rest: String = line.chars().skip(col).collect();
    let rest = rest.trim_start();
    let quoted = rest.starts_with('"') || rest.starts_with('\'');
    let v = if quoted {
        let q = rest.chars().next()?;
        rest[1..].split(q).next().unwrap_or("")
    } else {
        rest.split([',', '}', ']', '#'])
            .next()
            .unwrap_or("")
            .trim_end()
    };
    // A long value is not worth quoting back whole.
    Some(v.chars().take(80).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(line: u64, column: u64) -> Loc {
        Loc { line, column }
    }

    #[test]
    fn an_entry_and_its_block_are_blanked_keeping_every_position() {
        let text = "a:\n  x: 1\n  bad:\n    deep: 2\n  y: 3\n";
        let mut r = Recovery::new(text);
        assert_eq!(r.cut_at(loc(3, 3), "unknown field `bad`"), Cut::Done);
        assert_eq!(r.text(), "a:\n  x: 1\n      \n           \n  y: 3\n");
        assert_eq!(
            r.cut_at(loc(3, 3), "again"),
            Cut::Nothing,
            "a blanked line is not cut twice"
        );
    }

    #[test]
    fn a_flow_value_goes_with_its_key_and_an_item_keeps_its_siblings() {
        let mut r = Recovery::new("d:\n  out: { batch: { max: -5 } }\n");
        assert_eq!(r.cut_at(loc(2, 24), "invalid u64"), Cut::Done);
        assert_eq!(r.text().trim(), "d:");
        let mut r = Recovery::new("routes:\n  - name: a\n    filtr: x\n");
        assert_eq!(r.cut_at(loc(3, 5), "unknown field"), Cut::Done);
        assert_eq!(r.text(), "routes:\n  - name: a\n            \n");
        // A one-line item goes whole, not left as a null item.
        let mut r = Recovery::new("routes:\n  - { name: a, filtr: x }\n  - { name: b }\n");
        assert_eq!(r.cut_at(loc(2, 16), "unknown field"), Cut::Done);
        assert_eq!(
            r.text(),
            "routes:\n                         \n  - { name: b }\n"
        );
    }

    #[test]
    fn a_missing_field_blanks_the_mapping_that_lacks_it() {
        let mut r = Recovery::new("sources:\n  web:\n    address: x\n    port: 1\nroutes: []\n");
        assert_eq!(r.cut_at(loc(3, 5), "missing field `type`"), Cut::Done);
        assert_eq!(
            r.text(),
            "sources:\n      \n              \n           \nroutes: []\n"
        );
        // The field was there with a bad value, blanked: an echo.
        let mut r = Recovery::new("sources:\n  web:\n    type: http\n    address: 5\n");
        assert_eq!(r.cut_at(loc(4, 14), "invalid address"), Cut::Done);
        assert_eq!(r.cut_at(loc(3, 5), "missing field `address`"), Cut::Echo);
        // And `sources:` left with nothing under it.
        assert_eq!(r.cut_at(loc(1, 9), "expected mapping start"), Cut::Echo);
    }

    #[test]
    fn messages_say_what_to_write() {
        assert_eq!(
            user_words(
                "destinations.out.batch.max_events.value: invalid u64",
                Some("-5")
            ),
            "destinations.out.batch.max_events: expected a whole number, 0 or more, not `-5`"
        );
        assert_eq!(
            user_words(
                "duplicate mapping key: out, set DuplicateKeyPolicy in Options if acceptable",
                None
            ),
            "`out` is given twice here; each key may appear once"
        );
        let m = user_words(
            "sources.in.address: invalid socket address syntax",
            Some("localhost:9000"),
        );
        assert!(
            m.contains("not `localhost:9000`") && m.contains("127.0.0.1:9000"),
            "{m}"
        );
        let m = user_words(
            "sources.in.address: invalid socket address syntax",
            Some("9000"),
        );
        assert!(m.contains("0.0.0.0:9000"), "{m}");
        assert_eq!(
            value_at("  a: { x: \"q,r\", y: 2 }", loc(1, 11)).as_deref(),
            Some("q,r")
        );
        assert_eq!(value_at("  a: 12 # c", loc(1, 6)).as_deref(), Some("12"));
    }
}
