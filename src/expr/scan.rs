//! Lazy field location: finds the fields filters name in an event's JSON
//! without allocating and without parsing the values, and only as far into
//! the event as evaluation needs.
//!
//! The scanner walks the top-level object one member at a time, skipping
//! values it does not need (strings eight bytes at a time), descending only
//! into values a path needs, and recording byte spans; `value.rs` interprets
//! the raw values on demand. It stops after any member once the field being
//! asked for is found, and resumes there when evaluation asks for a field
//! further on. So `level == "error" && ...` on an event whose `level` comes
//! early and is not `error` reads only the start of the event.
//!
//! Why not `sonic_rs::get_many`: measured on this machine with a 214-byte
//! event and three paths it took ~490 ns and allocates twice per call; one
//! `sonic_rs::get` took ~107 ns. See `benches/filter.rs` for current figures.
//!
//! Malformed input never panics: the scan stops and whatever was not found
//! reads as missing.

use std::cell::Cell;

use super::parser::Segment;
use crate::codec::json_syntax::stop_mask;

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

/// The longest field path, in segments. The scanner recurses once per
/// segment, so this bounds its stack use whatever the input looks like.
pub const MAX_PATH_DEPTH: usize = 16;

/// `Scratch::next` once there is nothing more to scan.
const DONE: usize = usize::MAX;

/// The set of field paths some filters need, as a trie, each with a slot number.
#[derive(Debug, Default, Clone)]
pub struct FieldSet {
    root: Node,
    slots: u32,
}

/// Working memory for one event at a time: where each field is, and where
/// the scan will resume. Create one per batch (or per thread) and reuse it.
#[derive(Debug, Clone)]
pub struct Scratch {
    spans: Vec<Cell<Span>>,
    /// Offset of the next top-level member to scan, or `DONE`.
    next: Cell<usize>,
    /// Slots not found yet.
    remaining: Cell<usize>,
}

impl Scratch {
    pub fn new(slots: usize) -> Self {
        Scratch {
            spans: (0..slots).map(|_| Cell::new(MISSING)).collect(),
            next: Cell::new(DONE),
            remaining: Cell::new(0),
        }
    }

    /// Start on a new event. `json` is `None` for events that are not JSON
    /// (every field then reads as missing). Nothing is scanned yet.
    pub fn reset(&mut self, fields: &FieldSet, json: Option<&[u8]>) {
        let n = fields.len();
        if self.spans.len() < n {
            self.spans.resize_with(n, || Cell::new(MISSING));
        }
        for s in &self.spans {
            s.set(MISSING);
        }
        self.remaining.set(n);
        let start = match json {
            Some(b) if n > 0 && b.len() < u32::MAX as usize => {
                let p = skip_ws(b, 0);
                if b.get(p) == Some(&b'{') {
                    skip_ws(b, p + 1)
                } else {
                    DONE
                }
            }
            _ => DONE,
        };
        self.next.set(if start >= json.map_or(0, <[u8]>::len) {
            DONE
        } else {
            start
        });
    }

    /// Where `slot` was found so far (without scanning further).
    pub fn span(&self, slot: u32) -> Span {
        self.spans.get(slot as usize).map_or(MISSING, Cell::get)
    }
}

#[inline]
fn skip_ws(b: &[u8], mut p: usize) -> usize {
    while b.get(p).is_some_and(|&c| is_ws(c)) {
        p += 1;
    }
    p
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

    /// The slot for a path of plain keys (`["kube", "namespace"]`).
    pub fn slot_for(&mut self, keys: &[&str]) -> u32 {
        let path: Vec<Segment> = keys
            .iter()
            .map(|k| Segment::Key((*k).to_string()))
            .collect();
        self.slot(&path)
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.slots as usize
    }

    pub fn is_empty(&self) -> bool {
        self.slots == 0
    }

    /// Locate every wanted field of `json` now.
    pub fn scan(&self, json: &[u8], scratch: &mut Scratch) {
        scratch.reset(self, Some(json));
        self.resume(json, scratch, None);
    }

    /// Where `slot` is in `json`, scanning further if it has not been reached
    /// yet. `scratch` must have been `reset` for this `json`.
    #[inline]
    pub fn get(&self, json: &[u8], scratch: &Scratch, slot: u32) -> Span {
        let s = scratch.span(slot);
        if s.is_missing() && scratch.next.get() != DONE {
            self.resume(json, scratch, Some(slot));
            scratch.span(slot)
        } else {
            s
        }
    }

    /// Scan top-level members until `want` is found (or to the end).
    fn resume(&self, json: &[u8], scratch: &Scratch, want: Option<u32>) {
        let mut p = scratch.next.get();
        let mut sc = Scanner {
            b: json,
            remaining: scratch.remaining.get(),
            out: &scratch.spans[..self.len().min(scratch.spans.len())],
        };
        while p != DONE {
            p = sc.root_member(&self.root, p).unwrap_or(DONE);
            if sc.remaining == 0 {
                p = DONE;
            }
            if want.is_some_and(|w| !scratch.span(w).is_missing()) {
                break;
            }
        }
        scratch.next.set(p);
        scratch.remaining.set(sc.remaining);
    }
}

struct Scanner<'a, 'o> {
    b: &'a [u8],
    remaining: usize,
    out: &'o [Cell<Span>],
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
        if let Some(slot) = node.slot
            && let Some(s) = self.out.get(slot as usize)
            && s.get().is_missing()
        {
            s.set(Span {
                start: start as u32,
                end: end as u32,
            });
            self.remaining -= 1;
        }
        Some(end)
    }

    /// One member of the top-level object, starting at its key. Returns
    /// where the next member starts; `None` at the end of the object, on
    /// malformed input, or when every slot is found.
    fn root_member(&mut self, root: &Node, p: usize) -> Option<usize> {
        let p = self.member(root, p)?;
        let p = self.ws(p)?;
        match self.b[p] {
            b',' => self.ws(p + 1),
            _ => None,
        }
    }

    fn object(&mut self, node: &Node, open: usize) -> Option<usize> {
        let mut p = self.ws(open + 1)?;
        if self.b[p] == b'}' {
            return Some(p + 1);
        }
        loop {
            p = self.member(node, p)?;
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

    /// One `"key": value` member starting at `p`, matched against `node`'s
    /// children; returns the position just after the value.
    #[inline]
    fn member(&mut self, node: &Node, p: usize) -> Option<usize> {
        if *self.b.get(p)? != b'"' {
            return None;
        }
        let (ks, ke, escaped) = self.string(p)?;
        let mut p = self.ws(ke + 1)?;
        if self.b[p] != b':' {
            return None;
        }
        p += 1;
        match find_key(node, &self.b[ks..ke], escaped) {
            Some(child) => self.value(child, p),
            None => {
                let v = self.ws(p)?;
                self.skip(v)
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

/// Position of the first `"` or `\\` at or after `i`. Most JSON strings in
/// logs are shorter than 16 bytes, so one SSE2 compare usually settles it
/// with a predictable branch; 8-byte SWAR steps (measured first) left a
/// mispredicted loop exit on most values.
#[inline]
fn quote_or_backslash(b: &[u8], mut i: usize) -> Option<usize> {
    while let Some(chunk) = b.get(i..).and_then(|r| r.first_chunk::<16>()) {
        let m = stop_mask::<false>(chunk);
        if m != 0 {
            return Some(i + m.trailing_zeros() as usize);
        }
        i += 16;
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
        let mut scratch = Scratch::new(set.len());
        set.scan(json.as_bytes(), &mut scratch);
        let s = scratch.span(slot);
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

    /// Random JSON with escapes, nesting and odd whitespace: every span the
    /// scanner finds must parse to exactly the value serde_json finds at that
    /// path, and it must find every value serde_json finds.
    #[test]
    fn agrees_with_serde_json_on_random_documents() {
        fn ws(r: &mut fastrand::Rng, out: &mut String) {
            for _ in 0..r.usize(0..3) {
                out.push([' ', '\n', '\t', '\r'][r.usize(0..4)]);
            }
        }
        fn string(r: &mut fastrand::Rng, out: &mut String) {
            out.push('"');
            for _ in 0..r.usize(0..40) {
                match r.u8(0..20) {
                    0 => out.push_str("\\\""),
                    1 => out.push_str("\\\\"),
                    2 => out.push_str("\\u00e9"),
                    3 => out.push_str(",:{}[]"),
                    _ => out.push(r.alphanumeric()),
                }
            }
            out.push('"');
        }
        fn value(r: &mut fastrand::Rng, depth: usize, out: &mut String) {
            let keys = ["a", "b", "level", "kube", "tags", "x\\\"y"];
            match r.u8(0..if depth > 3 { 5 } else { 8 }) {
                0 => out.push_str(&r.i64(-1000..1000).to_string()),
                1 => out.push_str("1.5e3"),
                2 => out.push_str(["true", "false", "null"][r.usize(0..3)]),
                3 | 4 => string(r, out),
                5 | 6 => {
                    out.push('{');
                    let mut order: Vec<usize> = (0..keys.len()).collect();
                    r.shuffle(&mut order);
                    for (i, k) in order.into_iter().take(r.usize(0..6)).enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        ws(r, out);
                        out.push('"');
                        out.push_str(keys[k]);
                        out.push('"');
                        ws(r, out);
                        out.push(':');
                        ws(r, out);
                        value(r, depth + 1, out);
                        ws(r, out);
                    }
                    out.push('}');
                }
                _ => {
                    out.push('[');
                    for i in 0..r.usize(0..5) {
                        if i > 0 {
                            out.push(',');
                        }
                        ws(r, out);
                        value(r, depth + 1, out);
                        ws(r, out);
                    }
                    out.push(']');
                }
            }
        }
        fn oracle<'v>(v: &'v serde_json::Value, path: &[Segment]) -> Option<&'v serde_json::Value> {
            path.iter().try_fold(v, |v, seg| match seg {
                Segment::Key(k) => v.as_object()?.get(k),
                Segment::Index(i) => v.as_array()?.get(*i),
            })
        }
        let paths: Vec<Vec<Segment>> = vec![
            vec![key("level")],
            vec![key("a")],
            vec![key("kube"), key("a")],
            vec![key("kube"), key("b"), key("level")],
            vec![key("tags"), Segment::Index(0)],
            vec![key("tags"), Segment::Index(2)],
            vec![key("b"), Segment::Index(1), key("a")],
            vec![key("x\"y")],
            vec![key("kube")],
        ];
        let mut set = FieldSet::new();
        let slots: Vec<u32> = paths.iter().map(|p| set.slot(p)).collect();
        let mut r = fastrand::Rng::with_seed(7);
        let mut scratch = Scratch::new(set.len());
        let mut found = 0;
        for _ in 0..20_000 {
            let mut doc = String::new();
            ws(&mut r, &mut doc);
            value(&mut r, 0, &mut doc);
            ws(&mut r, &mut doc);
            let parsed: serde_json::Value = serde_json::from_str(&doc)
                .unwrap_or_else(|e| panic!("generator produced invalid JSON ({e}): {doc}"));
            set.scan(doc.as_bytes(), &mut scratch);
            for (path, slot) in paths.iter().zip(&slots) {
                let span = scratch.span(*slot);
                let mine = (!span.is_missing()).then(|| {
                    let text = &doc[span.start as usize..span.end as usize];
                    serde_json::from_str::<serde_json::Value>(text)
                        .unwrap_or_else(|e| panic!("span `{text}` is not a value ({e}) in {doc}"))
                });
                assert_eq!(mine.as_ref(), oracle(&parsed, path), "{path:?} in {doc}");
                found += usize::from(mine.is_some());
            }
        }
        assert!(
            found > 5_000,
            "the generator should hit the paths often ({found})"
        );
    }

    #[test]
    fn reads_only_as_far_as_asked_then_resumes() {
        let mut set = FieldSet::new();
        let level = set.slot(&[key("level")]);
        let ns = set.slot(&[key("kube"), key("namespace")]);
        let missing = set.slot(&[key("nope")]);
        let json = br#"{"level":"info","a":1,"kube":{"namespace":"prod"},"z":2}"#;
        let mut scratch = Scratch::new(set.len());
        scratch.reset(&set, Some(json));
        assert!(!set.get(json, &scratch, level).is_missing());
        // Stopped right after `level`: `kube` not read yet.
        assert!(scratch.span(ns).is_missing());
        assert_eq!(&json[scratch.next.get()..scratch.next.get() + 3], b"\"a\"");
        let s = set.get(json, &scratch, ns);
        assert_eq!(&json[s.start as usize..s.end as usize], b"\"prod\"");
        assert!(set.get(json, &scratch, missing).is_missing());
        assert_eq!(scratch.next.get(), DONE);
        // Text events and non-objects have no fields.
        scratch.reset(&set, None);
        assert!(set.get(json, &scratch, level).is_missing());
        scratch.reset(&set, Some(b"[1,2]"));
        assert!(set.get(b"[1,2]", &scratch, level).is_missing());
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
        let mut scratch = Scratch::new(set.len());
        for i in 0..=json.len() {
            set.scan(&json.as_bytes()[..i], &mut scratch);
        }
        for i in 0..json.len() {
            let mut bytes = json.as_bytes().to_vec();
            for c in [b'"', b'{', b'}', b'[', b']', b':', b',', b'\\'] {
                bytes[i] = c;
                set.scan(&bytes, &mut scratch);
            }
        }
    }
}
