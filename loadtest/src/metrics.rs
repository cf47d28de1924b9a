//! Scraping sluice's `/metrics` (Prometheus text) into something queryable.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

/// One scrape: series (`name{labels}` as written) to value.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    series: Vec<(String, String, f64)>,
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let mut series = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let Some((key, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(v) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match key.split_once('{') {
                Some((n, l)) => (n.to_string(), l.trim_end_matches('}').to_string()),
                None => (key.to_string(), String::new()),
            };
            series.push((name, labels, v));
        }
        Scrape { series }
    }

    /// Sum of `name` over series whose labels contain every `k="v"` given.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        self.series
            .iter()
            .filter(|(n, l, _)| n == name && wanted.iter().all(|w| l.contains(w.as_str())))
            .map(|(_, _, v)| v)
            .sum()
    }

    /// `name` by the value of `label`.
    pub fn by(&self, name: &str, label: &str) -> HashMap<String, f64> {
        let mut out = HashMap::new();
        let key = format!("{label}=\"");
        for (n, l, v) in &self.series {
            if n != name {
                continue;
            }
            if let Some(start) = l.find(&key) {
                let rest = &l[start + key.len()..];
                let value = rest.split('"').next().unwrap_or("").to_string();
                *out.entry(value).or_default() += v;
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

/// GET /metrics from sluice's API.
pub async fn scrape(client: &reqwest::Client, api: SocketAddr) -> Option<Scrape> {
    let r = client
        .get(format!("http://{api}/metrics"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    Some(Scrape::parse(&r.text().await.ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_and_groups_by_label() {
        let s = Scrape::parse(
            "# TYPE x counter\n\
             sluice_destination_dropped_events_total{destination=\"a\",reason=\"backpressure\"} 3\n\
             sluice_destination_dropped_events_total{destination=\"a\",reason=\"shutdown\"} 1\n\
             sluice_destination_dropped_events_total{destination=\"b\",reason=\"backpressure\"} 2\n\
             sluice_unmatched_events_total 7\n",
        );
        assert_eq!(s.sum("sluice_destination_dropped_events_total", &[]), 6.0);
        assert_eq!(
            s.sum(
                "sluice_destination_dropped_events_total",
                &[("destination", "a")]
            ),
            4.0
        );
        assert_eq!(
            s.by("sluice_destination_dropped_events_total", "reason")["backpressure"],
            5.0
        );
        assert_eq!(s.sum("sluice_unmatched_events_total", &[]), 7.0);
    }
}
