//! Name templates: `topic: "logs-{{ service }}"`, a Kafka topic, a Pub/Sub
//! ordering key, an S3 key prefix. Literal text with `{{ path }}` fields
//! read through a `FieldReader` (the filter language's paths), each with an
//! optional default for when the event lacks it: `{{ service ?? "misc" }}`
//! (JavaScript's nullish coalescing, as Cribl users write it).
//!
//! A field that is missing and has no default makes `render` fail with the
//! path, so the destination can use its fallback or count the event as
//! `unencodable`: never a silently wrong name.

use std::borrow::Cow;

use super::fields::{Field, FieldReader, FieldScratch};
use crate::event::Event;

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Field {
        field: Field,
        path: String,
        default: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parse `text`, adding its fields to `reader`.
    pub fn parse(text: &str, reader: &mut FieldReader) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| format!("template `{text}`: `{{{{` without a closing `}}}}`"))?;
            let inner = after[..close].trim();
            let (path, default) = match inner.split_once("??") {
                Some((p, d)) => (p.trim(), Some(unquote(d.trim(), text)?)),
                None => (inner, None),
            };
            if path.is_empty() {
                return Err(format!("template `{text}`: `{{{{ }}}}` names no field"));
            }
            let field = reader
                .add(path)
                .map_err(|e| format!("template `{text}`: {e}"))?;
            parts.push(Part::Field {
                field,
                path: path.to_string(),
                default,
            });
            rest = &after[close + 2..];
        }
        if rest.contains("}}") {
            return Err(format!(
                "template `{text}`: `}}}}` without an opening `{{{{`"
            ));
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// The text, when the template names no field.
    pub fn as_static(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Text(t)] => Some(t),
            _ => None,
        }
    }

    /// Write the template for `event` (after `reader.locate`) into `out`,
    /// which is cleared first. `Err(path)`: that field is missing and has no
    /// default.
    pub fn render<'t>(
        &'t self,
        reader: &FieldReader,
        event: &Event,
        scratch: &FieldScratch,
        out: &mut String,
    ) -> Result<(), &'t str> {
        self.render_each(
            reader,
            event,
            scratch,
            out,
            |t, o| o.push_str(t),
            |v, o| {
                if let Some(v) = v {
                    o.push_str(v)
                }
            },
        )
    }

    /// `render` with the literal text and the field values each written by
    /// its own function: a file path template, say, keeps a `/` of its text
    /// but must escape one in a value. A missing field without a default is
    /// given to `value` as `None`; the whole template is still written, and
    /// the first such field's path is the `Err`.
    pub fn render_each<'t>(
        &'t self,
        reader: &FieldReader,
        event: &Event,
        scratch: &FieldScratch,
        out: &mut String,
        mut text: impl FnMut(&str, &mut String),
        mut value: impl FnMut(Option<&str>, &mut String),
    ) -> Result<(), &'t str> {
        out.clear();
        let mut missing = Ok(());
        for p in &self.parts {
            match p {
                Part::Text(t) => text(t, out),
                field => match field.value(reader, event, scratch) {
                    Ok(v) => value(Some(&v), out),
                    Err(path) => {
                        value(None, out);
                        if missing.is_ok() {
                            missing = Err(path);
                        }
                    }
                },
            }
        }
        missing
    }

    /// The field paths the template reads, in order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field { path, .. } => Some(path.as_str()),
            Part::Text(_) => None,
        })
    }

    /// The literal text of the template, fields left out: what a config
    /// check reads for characters a value cannot bring.
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Text(t) => Some(t.as_str()),
            Part::Field { .. } => None,
        })
    }

    /// `render` for hierarchical names: an empty field is left out with the
    /// separator before it (or, while nothing has been written, the one
    /// after it), so `{{ host }}.{{ plugin }}-{{ plugin_instance }}` gives
    /// `web.load` for an empty instance, as collectd names its own metrics.
    /// Text before the first field is kept; a missing field still fails.
    pub fn render_compact<'t>(
        &'t self,
        reader: &FieldReader,
        event: &Event,
        scratch: &FieldScratch,
        out: &mut String,
    ) -> Result<(), &'t str> {
        out.clear();
        let mut seen_field = false;
        let mut written = false;
        let mut skip_next = false;
        let mut pending: Option<&str> = None;
        for p in &self.parts {
            match p {
                Part::Text(t) if !seen_field => out.push_str(t),
                Part::Text(_) if skip_next => skip_next = false,
                Part::Text(t) => pending = Some(t),
                field => {
                    seen_field = true;
                    let value = field.value(reader, event, scratch)?;
                    if value.is_empty() {
                        pending = None;
                        skip_next = !written;
                        continue;
                    }
                    if let Some(sep) = pending.take() {
                        out.push_str(sep);
                    }
                    out.push_str(&value);
                    written = true;
                    skip_next = false;
                }
            }
        }
        if let Some(rest) = pending {
            out.push_str(rest);
        }
        Ok(())
    }
}

impl Part {
    /// A field part's value in `event`, or its default; `Err(path)` when
    /// it has neither. (A text part is its text.)
    fn value<'p, 'e>(
        &'p self,
        reader: &FieldReader,
        event: &'e Event,
        scratch: &FieldScratch,
    ) -> Result<Cow<'e, str>, &'p str>
    where
        'p: 'e,
    {
        match self {
            Part::Text(t) => Ok(Cow::Borrowed(t)),
            Part::Field {
                field,
                path,
                default,
            } => match (reader.string(event, scratch, *field), default) {
                (Some(v), _) => Ok(v),
                (None, Some(d)) => Ok(Cow::Borrowed(d)),
                (None, None) => Err(path),
            },
        }
    }
}

/// A default: `"text"`, `'text'`, or a bare word.
fn unquote(d: &str, template: &str) -> Result<String, String> {
    let quoted = d.len() >= 2
        && ((d.starts_with('"') && d.ends_with('"')) || (d.starts_with('\'') && d.ends_with('\'')));
    if quoted {
        return Ok(d[1..d.len() - 1].to_string());
    }
    if d.is_empty() || d.contains(char::is_whitespace) {
        return Err(format!(
            "template `{template}`: the default after `??` must be a word or a quoted string"
        ));
    }
    Ok(d.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn render(t: &str, event: &str) -> Result<String, String> {
        let mut r = FieldReader::new();
        let t = Template::parse(t, &mut r)?;
        let e = Event::json(Bytes::from(event.to_string()));
        let mut s = r.scratch();
        r.locate(&e, &mut s);
        let mut out = String::new();
        t.render(&r, &e, &s, &mut out)
            .map_err(|p| format!("missing {p}"))?;
        Ok(out)
    }

    #[test]
    fn fields_defaults_and_literals() {
        let ev = r#"{"service":"api","kube":{"ns":"prod"},"n":3}"#;
        assert_eq!(render("logs-{{ service }}", ev).unwrap(), "logs-api");
        assert_eq!(render("{{kube.ns}}/{{ n }}", ev).unwrap(), "prod/3");
        assert_eq!(render("t-{{ team ?? \"misc\" }}", ev).unwrap(), "t-misc");
        assert_eq!(render("t-{{ team ?? misc }}", ev).unwrap(), "t-misc");
        assert_eq!(render("t-{{ team }}", ev).unwrap_err(), "missing team");
        assert_eq!(render("plain", ev).unwrap(), "plain");
    }

    #[test]
    fn compact_names_drop_empty_parts_with_their_separator() {
        let compact = |t: &str, ev: &str| {
            let mut r = FieldReader::new();
            let t = Template::parse(t, &mut r).unwrap();
            let e = Event::json(Bytes::from(ev.to_string()));
            let mut s = r.scratch();
            r.locate(&e, &mut s);
            let mut out = String::new();
            t.render_compact(&r, &e, &s, &mut out)
                .map(|_| out)
                .map_err(str::to_string)
        };
        let collectd =
            "{{ host }}.{{ plugin }}-{{ plugin_instance }}.{{ type }}-{{ type_instance }}";
        let ev = |h: &str, pi: &str, ti: &str| {
            format!(
                r#"{{"host":"{h}","plugin":"cpu","plugin_instance":"{pi}","type":"cpu","type_instance":"{ti}"}}"#
            )
        };
        assert_eq!(
            compact(collectd, &ev("web", "0", "idle")).unwrap(),
            "web.cpu-0.cpu-idle"
        );
        assert_eq!(
            compact(collectd, &ev("web", "", "")).unwrap(),
            "web.cpu.cpu"
        );
        assert_eq!(
            compact(collectd, &ev("web", "", "idle")).unwrap(),
            "web.cpu.cpu-idle"
        );
        assert_eq!(compact(collectd, &ev("", "", "")).unwrap(), "cpu.cpu");
        assert_eq!(
            compact("collectd.{{ a }}.{{ b }}", r#"{"a":"","b":"x"}"#).unwrap(),
            "collectd.x"
        );
        assert_eq!(compact("{{ a }}.{{ b }}", r#"{"b":"x"}"#).unwrap_err(), "a");
        assert_eq!(
            compact("{{ a ?? '' }}.{{ b }}", r#"{"b":"x"}"#).unwrap(),
            "x"
        );
    }

    #[test]
    fn static_templates_and_errors() {
        let mut r = FieldReader::new();
        assert_eq!(
            Template::parse("logs", &mut r).unwrap().as_static(),
            Some("logs")
        );
        assert!(
            Template::parse("a-{{ b }}", &mut r)
                .unwrap()
                .as_static()
                .is_none()
        );
        for bad in [
            "a-{{ b",
            "a-}}",
            "{{ }}",
            "{{ a b }}",
            "{{ a ?? two words }}",
        ] {
            assert!(Template::parse(bad, &mut r).is_err(), "{bad}");
        }
    }
}
