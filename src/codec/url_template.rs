//! An HTTP URL with fields in its path or query:
//! `url: "https://logs.example.com/v1/{{ tenant }}/ingest"`. A batch is sent
//! to the URL its first event gives, so the fields must be among
//! `batch.partition_by` (every event of a batch then gives the same URL);
//! the config check says so. Values are percent-encoded; the scheme, host
//! and port stay fixed, so endpoint health is still per host.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::fields::FieldReader;
use super::template::Template;
use crate::event::Event;

/// Everything but RFC 3986's unreserved characters is encoded.
const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[derive(Debug)]
pub struct UrlTemplate {
    template: Template,
    reader: FieldReader,
}

impl UrlTemplate {
    /// `None` when `text` has no field.
    pub fn parse(text: &str) -> Result<Option<UrlTemplate>, String> {
        if !text.contains("{{") {
            return Ok(None);
        }
        let mut reader = FieldReader::new();
        let template = Template::parse(text, &mut reader)?;
        let head = template.texts().next().unwrap_or("");
        let fixed_host = text.starts_with(head)
            && head
                .split_once("://")
                .is_some_and(|(_, rest)| rest.contains('/'));
        if !fixed_host {
            return Err(format!(
                "url `{text}`: fields may stand only in the path or query, after the host"
            ));
        }
        Ok(Some(UrlTemplate { template, reader }))
    }

    /// The field paths it reads.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.template.paths()
    }

    /// The URL for `event`; `Err` names a missing field or a bad result.
    pub fn render(&self, event: &Event) -> Result<reqwest::Url, String> {
        let mut scratch = self.reader.scratch();
        self.reader.locate(event, &mut scratch);
        let mut out = String::new();
        self.template
            .render_each(
                &self.reader,
                event,
                &scratch,
                &mut out,
                |t, o| o.push_str(t),
                |v, o| {
                    if let Some(v) = v {
                        o.extend(utf8_percent_encode(v, VALUE));
                    }
                },
            )
            .map_err(|path| format!("the URL's field `{path}` is missing from the event"))?;
        reqwest::Url::parse(&out).map_err(|e| format!("url `{out}`: {e}"))
    }

    /// The URL with each field shown as `{path}`: its name in metrics and
    /// the status page.
    pub fn placeholder(&self) -> String {
        let mut out = String::new();
        let mut paths = self.template.paths();
        let _ = self.template.render_each(
            &self.reader,
            &Event::json(bytes::Bytes::from_static(b"{}")),
            &self.reader.scratch(),
            &mut out,
            |t, o| o.push_str(t),
            |_, o| {
                o.push('{');
                o.push_str(paths.next().unwrap_or(""));
                o.push('}');
            },
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_encoded_into_the_path_and_the_host_stays() {
        let t = UrlTemplate::parse("http://h:8080/v1/{{ tenant }}/in?src={{ app ?? none }}")
            .unwrap()
            .unwrap();
        assert_eq!(t.paths().collect::<Vec<_>>(), ["tenant", "app"]);
        let e = Event::json(bytes::Bytes::from_static(br#"{"tenant":"a b/c"}"#));
        assert_eq!(
            t.render(&e).unwrap().as_str(),
            "http://h:8080/v1/a%20b%2Fc/in?src=none"
        );
        assert_eq!(t.placeholder(), "http://h:8080/v1/{tenant}/in?src={app}");
        let e = Event::json(bytes::Bytes::from_static(b"{}"));
        assert!(t.render(&e).unwrap_err().contains("tenant"));
        assert!(UrlTemplate::parse("http://{{ host }}/x").is_err());
        assert!(UrlTemplate::parse("http://h/x").unwrap().is_none());
    }
}
