//! Lazy field location: one pass over an event's JSON finds every field that any
//! filter names, without allocating and without parsing the values.
//!
//! Why not `sonic_rs::get_many`: measured on this machine with a 214-byte event
//! and three paths it took ~490 ns per event and allocates two vectors per call;
//! one `sonic_rs::get` took ~107 ns. This scanner walks the object once, skips
//! strings with `memchr`, descends only into values a path needs, stops as soon
//! as every wanted field is found, and writes byte spans into a caller-owned
//! buffer. The values stay raw; `value.rs` interprets them on demand.
//!
//! Malformed input never panics: the scan stops and whatever was not found reads
//! as missing.

use super::parser::Segment;

/// Where a field's JSON value sits in the event, or `MISSING`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

pub const MISSING: Span = Span {
    start: u32::MAX,
    end: 0,
};

impl Span {
    #[inline]
    pub fn is_missing(self) -> bool {
        self.start == u32::MAX
    }
}

#[derive(Debug, Default, Clone)]
struct Node {
    slot: Option<u32>,
    keys: Vec<(Box<[u8]>, Node)>,
    indices: Vec<(u32, Node)>,
}

/// The set of field paths some filters need, as a trie, each with a slot number.
#[derive(Debug, Default, Clone)]
pub struct FieldSet {
    root: Node,
    slots: u32,
}

impl FieldSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// The slot for `path`, adding it if new. Paths are never empty.
    pub fn slot(&mut self, path: &[Segment]) -> u32 {
        let mut node = &mut self.root;
        for seg in path {
            node = match seg {
                Segment::Key(k) => {
                    let k = k.as_bytes();
                    match node.keys.iter().position(|(key, _)| &**key == k) {
                        Some(i) => &mut node.keys[i].1,
                        None => {
                            node.keys.push((k.into(), Node::default()));
                            &mut node.keys.last_mut().expect("just pushed").1
                        }
                    }
                }
                Segment::Index(i) => {
                    let i = u32::try_from(*i).unwrap_or(u32::MAX);
                    match node.indices.iter().position(|(idx, _)| *idx == i) {
                        Some(p) => &mut node.indices[p].1,
                        None => {
                            node.indices.push((i, Node::default()));
                            &mut node.indices.last_mut().expect("just pushed").1
                        }
                    }
                }
            };
        }
        match node.slot {
            Some(s) => s,
            None => {
                let s = self.slots;
                node.slot = Some(s);
                self.slots += 1;
                s
            }
        }
    }

    /// Number of slots; a scan buffer must be at least this long.
    pub fn len(&self) -> usize {
        self.slots as usize
    }

    pub fn is_empty(&self) -> bool {
        self.slots == 0
    }

    /// Locate every wanted field in `json`, writing spans into `out[..self.len()]`.
    pub fn scan(&self, json: &[u8], out: &mut [Span]) {
        let n = self.len().min(out.len());
        out[..n].fill(MISSING);
        if n == 0 || json.len() >= u32::MAX as usize {
            return;
        }
        let mut sc = Scanner {
            b: json,
            remaining: n,
            out: &mut out[..n],
        };
        let _ = sc.value(&self.root, 0);
    }
}

struct Scanner<'a, 'o> {
    b: &'a [u8],
    remaining: usize,
    out: &'o mut [Span],
}

#[inline]
fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

impl Scanner<'_, '_> {
    #[inline]
    fn ws(&self, mut p: usize) -> Option<usize> {
        while is_ws(*self.b.get(p)?) {
            p += 1;
        }
        Some(p)
    }

    /// Scan the value at `p` for `node`; returns the position after it, or
    /// `None` to stop (malformed input, or every slot found).
    fn value(&mut self, node: &Node, p: usize) -> Option<usize> {
        let start = self.ws(p)?;
        let c = *self.b.get(start)?;
        let end = if c == b'{' && !node.keys.is_empty() {
            self.object(node, start)?
        } else if c == b'[' && !node.indices.is_empty() {
            self.array(node, start)?
        } else {
            self.skip(start)?
        };
        if let Some(slot) = node.slot {
            let s = &mut self.out[slot as usize];
            if s.is_missing() {
                *s = Span {
                    start: start as u32,
                    end: end as u32,
                };
                self.remaining -= 1;
            }
        }
        Some(end)
    }

    fn object(&mut self, node: &Node, open: usize) -> Option<usize> {
        let mut p = self.ws(open + 1)?;
        if self.b[p] == b'}' {
            return Some(p + 1);
        }
        loop {
            if self.b[p] != b'"' {
                return None;
            }
            let (ks, ke, escaped) = self.string(p)?;
            p = self.ws(ke + 1)?;
            if self.b[p] != b':' {
                return None;
            }
            p += 1;
            let child = find_key(node, &self.b[ks..ke], escaped);
            p = match child {
                Some(child) => self.value(child, p)?,
                None => {
                    let v = self.ws(p)?;
                    self.skip(v)?
                }
            };
            if self.remaining == 0 {
                return None;
            }
            p = self.ws(p)?;
            match self.b[p] {
                b',' => p = self.ws(p + 1)?,
                b'}' => return Some(p + 1),
                _ => return None,
            }
        }
    }

    fn array(&mut self, node: &Node, open: usize) -> Option<usize> {
        let mut p = self.ws(open + 1)?;
        if self.b[p] == b']' {
            return Some(p + 1);
        }
        let mut index: u32 = 0;
        loop {
            let child = node.indices.iter().find(|(i, _)| *i == index);
            p = match child {
                Some((_, child)) => self.value(child, p)?,
                None => {
                    let v = self.ws(p)?;
                    self.skip(v)?
                }
            };
            if self.remaining == 0 {
                return None;
            }
            p = self.ws(p)?;
            match self.b[p] {
                b',' => p += 1,
                b']' => return Some(p + 1),
                _ => return None,
            }
            index = index.saturating_add(1);
        }
    }

    /// The string starting at the quote at `p`: (content start, closing quote, has escapes).
    #[inline]
    fn string(&self, p: usize) -> Option<(usize, usize, bool)> {
        let start = p + 1;
        let mut i = start;
        let mut escaped = false;
        loop {
            let j = quote_or_backslash(self.b, i)?;
            if self.b[j] == b'\\' {
                escaped = true;
                i = j + 2;
            } else {
                return Some((start, j, escaped));
            }
        }
    }

    /// Skip one value starting at `p` (no leading whitespace); position after it.
    fn skip(&self, p: usize) -> Option<usize> {
        match *self.b.get(p)? {
            b'"' => self.string(p).map(|(_, end, _)| end + 1),
            b'{' | b'[' => self.skip_container(p),
            b',' | b'}' | b']' | b':' => None,
            _ => {
                let mut i = p;
                while let Some(&c) = self.b.get(i) {
                    if c == b',' || c == b'}' || c == b']' || is_ws(c) {
                        break;
                    }
                    i += 1;
                }
                Some(i)
            }
        }
    }

    fn skip_container(&self, p: usize) -> Option<usize> {
        let mut depth = 0usize;
        let mut i = p;
        loop {
            match *self.b.get(i)? {
                b'"' => {
                    i = self.string(i)?.1 + 1;
                    continue;
                }
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(i + 1);
                    }
                }
                _ => {}
            }
            i += 1;
        }
    }
}

/// Call `f` with the raw text of each element of the JSON array `raw`, until it
/// returns false. Malformed input ends the walk early.
pub fn for_each_element(raw: &[u8], mut f: impl FnMut(&[u8]) -> bool) {
    let mut dummy = [];
    let sc = Scanner {
        b: raw,
        remaining: 0,
        out: &mut dummy,
    };
    let Some(mut p) = sc.ws(0) else { return };
    if raw[p] != b'[' {
        return;
    }
    let Some(next) = sc.ws(p + 1) else { return };
    p = next;
    if raw[p] == b']' {
        return;
    }
    loop {
        let Some(end) = sc.skip(p) else { return };
        if !f(&raw[p..end]) {
            return;
        }
        let Some(q) = sc.ws(end) else { return };
        if raw[q] != b',' {
            return;
        }
        let Some(q) = sc.ws(q + 1) else { return };
        p = q;
    }
}

/// Position of the first `"` or `\\` at or after `i`. JSON strings are mostly
/// shorter than a SIMD register, where `memchr2`'s setup costs more than the
/// search; eight bytes at a time with SWAR bit tricks measured faster here.
#[inline]
fn quote_or_backslash(b: &[u8], mut i: usize) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const QUOTES: u64 = LO * b'"' as u64;
    const SLASHES: u64 = LO * b'\\' as u64;
    while let Some(chunk) = b.get(i..).and_then(|r| r.first_chunk::<8>()) {
        let x = u64::from_le_bytes(*chunk);
        let q = x ^ QUOTES;
        let s = x ^ SLASHES;
        // Classic "has zero byte": the lowest flagged byte is always a real match.
        let m = ((q.wrapping_sub(LO) & !q) | (s.wrapping_sub(LO) & !s)) & HI;
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' {
            return Some(i);
        }
        i += 1;
    }
    None
}

#[inline]
fn same_key(a: &[u8], b: &[u8]) -> bool {
    // Keys are short: a length check and a byte loop beat a call to memcmp.
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

fn find_key<'n>(node: &'n Node, raw: &[u8], escaped: bool) -> Option<&'n Node> {
    if !escaped {
        return node
            .keys
            .iter()
            .find(|(k, _)| same_key(k, raw))
            .map(|(_, n)| n);
    }
    // Rare: a key written with escapes. Decode it to compare.
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    let key: String = serde_json::from_slice(&quoted).ok()?;
    node.keys
        .iter()
        .find(|(k, _)| **k == *key.as_bytes())
        .map(|(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Segment {
        Segment::Key(s.to_string())
    }

    fn get<'a>(set: &FieldSet, json: &'a str, slot: u32) -> Option<&'a str> {
        let mut out = vec![MISSING; set.len()];
        set.scan(json.as_bytes(), &mut out);
        let s = out[slot as usize];
        (!s.is_missing()).then(|| &json[s.start as usize..s.end as usize])
    }

    #[test]
    fn finds_nested_and_indexed_fields() {
        let mut set = FieldSet::new();
        let level = set.slot(&[key("level")]);
        let ns = set.slot(&[key("kube"), key("namespace")]);
        let kube = set.slot(&[key("kube")]);
        let tag1 = set.slot(&[key("tags"), Segment::Index(1)]);
        let deep = set.slot(&[key("a"), Segment::Index(0), key("b")]);
        let json = r#" { "x": {"level": "no"}, "level" : "error", "kube": {"pod": "p", "namespace": "prod"},
            "tags": ["a", {"q": "]"}, "c"], "a": [{"b": 1.5e3}], "s": "with \"quotes\" and \\" }"#;
        assert_eq!(get(&set, json, level), Some(r#""error""#));
        assert_eq!(get(&set, json, ns), Some(r#""prod""#));
        assert_eq!(
            get(&set, json, kube),
            Some(r#"{"pod": "p", "namespace": "prod"}"#)
        );
        assert_eq!(get(&set, json, tag1), Some(r#"{"q": "]"}"#));
        assert_eq!(get(&set, json, deep), Some("1.5e3"));
    }

    #[test]
    fn missing_and_wrong_shapes_are_missing() {
        let mut set = FieldSet::new();
        let ns = set.slot(&[key("kube"), key("namespace")]);
        let idx = set.slot(&[key("tags"), Segment::Index(5)]);
        for json in [
            r#"{"kube": "flat", "tags": [1,2]}"#,
            r#"{"kube": {}, "tags": []}"#,
            r#"[1,2,3]"#,
            "",
            "not json at all",
            r#"{"kube": {"namespace": "#,
            r#"{"kube" "namespace"}"#,
        ] {
            assert_eq!(get(&set, json, ns), None, "{json}");
            assert_eq!(get(&set, json, idx), None, "{json}");
        }
    }

    #[test]
    fn iterates_array_elements() {
        let mut seen = Vec::new();
        for_each_element(br#" [ 1, "a,]", {"b": [2]} , null]"#, |e| {
            seen.push(String::from_utf8(e.to_vec()).unwrap());
            true
        });
        assert_eq!(seen, vec!["1", r#""a,]""#, r#"{"b": [2]}"#, "null"]);
        for_each_element(b"[1, 2", |_| true);
        for_each_element(b"[", |_| true);
    }

    #[test]
    fn escaped_keys_and_duplicates() {
        let mut set = FieldSet::new();
        let a = set.slot(&[key("level")]);
        assert_eq!(
            get(&set, r#"{"le\u0076el": 1, "level": 2}"#, a),
            Some("1"),
            "the first occurrence wins"
        );
    }

    #[test]
    fn never_panics_on_truncations() {
        let mut set = FieldSet::new();
        set.slot(&[key("a"), key("b")]);
        set.slot(&[key("c"), Segment::Index(2)]);
        let json = r#"{"z": [1, {"y": "\\\""}], "a": {"b": [true, null]}, "c": [0, 1, "two"]}"#;
        let mut out = vec![MISSING; set.len()];
        for i in 0..=json.len() {
            set.scan(&json.as_bytes()[..i], &mut out);
        }
        for i in 0..json.len() {
            let mut bytes = json.as_bytes().to_vec();
            bytes[i] = b'"';
            set.scan(&bytes, &mut out);
            bytes[i] = b'{';
            set.scan(&bytes, &mut out);
        }
    }
}
