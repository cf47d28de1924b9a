//! Reports: a JSON file per scenario and the summary table on the terminal.

use std::path::Path;

use anyhow::Context;

use crate::scenario::Report;

pub fn write_json(dir: &Path, r: &Report) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join(format!("{}.json", r.name));
    std::fs::write(&path, serde_json::to_string_pretty(r)?)
        .with_context(|| format!("write {}", path.display()))?;
    if !r.throughput.is_empty() {
        let path = dir.join(format!("{}.md", r.name));
        std::fs::write(&path, markdown(r)).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

/// A throughput report as the Markdown tables docs/performance.md holds:
/// every row of the run, and what was checked before timing.
pub fn markdown(r: &Report) -> String {
    let mut out = format!("{}\n\n", r.description);
    for n in &r.notes {
        out.push_str(&format!("- {n}\n"));
    }
    out.push_str("\n| target | path | events/s | × relay | CPU cores | CPU-s per M events | peak RSS | lost |\n");
    out.push_str("|---|---|---|---|---|---|---|---|\n");
    for t in &r.throughput {
        let per_m = if t.events_per_s > 0.0 {
            t.cpu_cores / t.events_per_s * 1e6
        } else {
            0.0
        };
        out.push_str(&format!(
            "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.0} MB | {} |\n",
            t.target,
            t.path,
            rate(t.events_per_s),
            t.ratio_to_relay,
            t.cpu_cores,
            per_m,
            t.peak_rss_mb,
            t.lost
        ));
    }
    if !r.verified.is_empty() {
        out.push_str("\nChecked first (half a second at full speed over two connections, every line compared with what was sent, each connection's lines in order):\n\n");
        out.push_str("| target | path | lines | lost | duplicated | altered | out of order |\n|---|---|---|---|---|---|---|\n");
        for v in &r.verified {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                v.target, v.path, v.events, v.lost, v.duplicates, v.altered, v.out_of_order
            ));
        }
    }
    out
}

/// 1234567 as `1.23 M`, 12345 as `12.3 k`.
fn rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// The terminal summary: one line per scenario, then the throughput table.
pub fn summary(reports: &[Report]) -> String {
    let mut out = String::new();
    let header = [
        "scenario", "result", "sent", "received", "lost", "counted", "dup", "extra", "rss MB",
        "secs",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for r in reports.iter().filter(|r| r.throughput.is_empty()) {
        let c = &r.comparison;
        rows.push(vec![
            r.name.clone(),
            if r.passed {
                "PASS".into()
            } else {
                "FAIL".into()
            },
            c.sent.to_string(),
            (c.sent - c.lost).to_string(),
            c.lost.to_string(),
            r.explained.to_string(),
            c.duplicates.to_string(),
            c.unexpected.to_string(),
            format!("{:.0}–{:.0}", r.rss_min_mb, r.rss_max_mb),
            format!("{:.0}", r.seconds),
        ]);
    }
    if rows.len() > 1 {
        out.push_str(&table(&rows));
    }
    for r in reports.iter().filter(|r| !r.throughput.is_empty()) {
        let mut rows: Vec<Vec<String>> = vec![
            [
                "target",
                "path",
                "events/s",
                "MB/s",
                "CPU cores",
                "peak RSS MB",
                "× relay",
                "lost",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ];
        for t in &r.throughput {
            rows.push(vec![
                t.target.clone(),
                t.path.clone(),
                format!("{:.0}", t.events_per_s),
                format!("{:.1}", t.mb_per_s),
                format!("{:.2}", t.cpu_cores),
                format!("{:.0}", t.peak_rss_mb),
                format!("{:.2}", t.ratio_to_relay),
                t.lost.to_string(),
            ]);
        }
        out.push('\n');
        out.push_str(&format!(
            "throughput: {}\n",
            if r.passed { "PASS" } else { "FAIL" }
        ));
        out.push_str(&table(&rows));
        if !r.verified.is_empty() {
            let mut rows: Vec<Vec<String>> = vec![
                [
                    "target",
                    "path",
                    "checked",
                    "lost",
                    "dup",
                    "altered",
                    "out of order",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ];
            for v in &r.verified {
                rows.push(vec![
                    v.target.clone(),
                    v.path.clone(),
                    v.events.to_string(),
                    v.lost.to_string(),
                    v.duplicates.to_string(),
                    v.altered.to_string(),
                    v.out_of_order.to_string(),
                ]);
            }
            out.push_str("\nchecked first, byte for byte and in each connection's order:\n");
            out.push_str(&table(&rows));
        }
    }
    for r in reports.iter().filter(|r| !r.passed) {
        out.push_str(&format!("\n{} failed:\n", r.name));
        for f in &r.failures {
            out.push_str(&format!("  - {f}\n"));
        }
    }
    out
}

/// Left-aligned text columns, numbers right-aligned.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map(|c| c.chars().count()).unwrap_or(0))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (n, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let pad = widths[i].saturating_sub(c.chars().count());
                let numeric = n > 0 && c.chars().next().is_some_and(|ch| ch.is_ascii_digit());
                if numeric {
                    format!("{}{c}", " ".repeat(pad))
                } else {
                    format!("{c}{}", " ".repeat(pad))
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
        if n == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&rule.join("  "));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_scenario_is_listed_with_its_reasons() {
        let r = Report {
            name: "x".into(),
            passed: false,
            failures: vec!["3 events lost".into()],
            ..Report::default()
        };
        let s = summary(&[r]);
        assert!(s.contains("FAIL"), "{s}");
        assert!(s.contains("3 events lost"), "{s}");
    }
}
