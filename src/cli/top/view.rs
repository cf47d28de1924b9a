//! What `sluice top` draws, at any terminal size: the header and a summary
//! of what is wrong stay at the top; below them every section (destinations
//! first, problems first among them; then sources, pipelines, routes) is one
//! long list that scrolls. A column is shown whole or not at all — numbers
//! are never cut (`0/10000` must not read `0/1000`); at a narrow width the
//! least important columns are left out and the section's title names them.
//! Only text (ids, filters) is shortened, with `…`.

use std::time::Duration;

use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use serde_json::Value;

use super::{Rates, list, percent, total};

/// Where the list is scrolled to, and how tall its window was when last
/// drawn (a page is that many lines).
#[derive(Default)]
pub struct Scroll {
    pub offset: usize,
    pub page: usize,
    pub lines: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    Quit,
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
}

impl Scroll {
    pub fn apply(&mut self, key: Key) {
        let last = self.lines.saturating_sub(self.page);
        self.offset = match key {
            Key::Up => self.offset.saturating_sub(1),
            Key::Down => self.offset + 1,
            Key::PageUp => self.offset.saturating_sub(self.page.max(1)),
            Key::PageDown => self.offset + self.page.max(1),
            Key::Home => 0,
            Key::End | Key::Quit => last,
        }
        .min(last);
    }
}

pub fn draw(
    f: &mut ratatui::Frame,
    s: &Value,
    rates: &Rates,
    error: Option<&str>,
    scroll: &mut Scroll,
) {
    let width = f.area().width as usize;
    let mut head = vec![Line::styled(
        fit(&header(s), width),
        Style::new().add_modifier(Modifier::BOLD),
    )];
    if let Some(e) = error {
        head.push(Line::styled(
            fit(
                &format!("API unreachable: {e} (showing the last answer)"),
                width,
            ),
            Style::new().fg(Color::Red),
        ));
    }
    let problems = problems(s);
    head.push(match &problems {
        Some(p) => Line::styled(fit(p, width), Style::new().fg(Color::Red)),
        None => Line::styled("no problems", Style::new().fg(Color::Green)),
    });

    let body = sections(s, rates, width);
    let [top, list_area, foot] = Layout::vertical([
        Constraint::Length(head.len() as u16),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(f.area());
    scroll.page = list_area.height as usize;
    scroll.lines = body.len();
    scroll.offset = scroll.offset.min(body.len().saturating_sub(scroll.page));
    f.render_widget(Paragraph::new(head), top);
    let shown: Vec<Line> = body
        .into_iter()
        .skip(scroll.offset)
        .take(scroll.page)
        .collect();
    f.render_widget(Paragraph::new(shown), list_area);
    let hint = if scroll.lines > scroll.page {
        format!(
            "lines {}-{} of {} · ↑↓ PgUp PgDn Home End scroll · q quit",
            scroll.offset + 1,
            (scroll.offset + scroll.page).min(scroll.lines),
            scroll.lines
        )
    } else {
        "q quit".to_string()
    };
    f.render_widget(
        Paragraph::new(fit(&hint, width)).style(Style::new().add_modifier(Modifier::DIM)),
        foot,
    );
}

fn header(s: &Value) -> String {
    let reload = &s["config"]["last_reload"];
    let reload = if reload.is_null() {
        String::new()
    } else {
        format!(
            "   last reload: {}",
            reload["result"].as_str().unwrap_or("?")
        )
    };
    format!(
        "sluice {}   {}   up {}   config v{} ({}){reload}",
        s["version"].as_str().unwrap_or("?"),
        s["state"].as_str().unwrap_or("?"),
        humantime::format_duration(Duration::from_secs(
            s["uptime_seconds"].as_f64().unwrap_or(0.0) as u64
        )),
        s["config"]["version"],
        s["config"]["file"].as_str().unwrap_or("?"),
    )
}

/// One line naming what needs attention: destinations not `ok`, sources
/// not running. `None` when all is well.
fn problems(s: &Value) -> Option<String> {
    let mut parts = Vec::new();
    let mut by_state: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for d in list(s, "destinations") {
        let state = d["state"].as_str().unwrap_or("?");
        if state != "ok" {
            by_state
                .entry(state)
                .or_default()
                .push(d["id"].as_str().unwrap_or("?"));
        }
    }
    for (state, ids) in by_state {
        parts.push(format!("{} {state}: {}", ids.len(), ids.join(", ")));
    }
    let stopped: Vec<&str> = list(s, "sources")
        .iter()
        .filter(|x| x["state"].as_str().is_some_and(|st| st != "running"))
        .filter_map(|x| x["id"].as_str())
        .collect();
    if !stopped.is_empty() {
        parts.push(format!("sources not running: {}", stopped.join(", ")));
    }
    (!parts.is_empty()).then(|| parts.join(" · "))
}

/// Destinations (problems first), sources, pipelines, routes.
fn sections(s: &Value, rates: &Rates, width: usize) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    let mut dests: Vec<&Value> = list(s, "destinations").iter().collect();
    // Stable: within each group the configuration's order stays.
    dests.sort_by_key(|d| d["state"] == "ok");
    let routers = list(s, "output_routers");
    let rows = dests.len() + routers.len();
    let mut t = Table::new(width);
    let d = |i: usize| (i < dests.len()).then(|| dests[i]);
    let r = |i: usize| (i >= dests.len()).then(|| &routers[i - dests.len()]);
    let id_of = |i: usize| {
        d(i).or_else(|| r(i))
            .and_then(|x| x["id"].as_str())
            .unwrap_or("")
            .to_string()
    };
    t.text("DESTINATION", 0, rows, id_of);
    t.text("TYPE", 3, rows, |i| {
        d(i).map_or("router".into(), |x| str_of(&x["type"]))
    });
    t.text("POLICY", 5, rows, |i| {
        d(i).map_or("-".into(), |x| str_of(&x["policy"]))
    });
    t.text("STATE", 0, rows, |i| {
        d(i).map_or("ok".into(), |x| str_of(&x["state"]))
    });
    t.number("IN/S", 1, rows, |i| rates.get(&format!("in/{}", id_of(i))));
    t.number("OUT/S", 1, rows, |i| {
        rates.get(&format!("out/{}", id_of(i)))
    });
    t.number("QUEUE", 2, rows, |i| {
        d(i).map_or("-".into(), |x| format!("{}/{}", x["queued"], x["capacity"]))
    });
    t.number("DISK", 4, rows, |i| {
        d(i).map_or("-".into(), |x| {
            let pq = &x["persistent_queue"];
            if pq.is_null() {
                "-".into()
            } else if pq["engaged"] == true {
                format!("{} (engaged)", pq["events"])
            } else {
                pq["events"].to_string()
            }
        })
    });
    t.text("DROPPED", 3, rows, |i| match d(i) {
        Some(x) => {
            let drops: Vec<String> = x["dropped"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(_, v)| v.as_u64().unwrap_or(0) > 0)
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect()
                })
                .unwrap_or_default();
            if drops.is_empty() {
                "0".into()
            } else {
                drops.join(" ")
            }
        }
        None => r(i).map_or(String::new(), |x| total(&x["dropped"]).to_string()),
    });
    t.text("DOWN", 4, rows, |i| {
        let down: Vec<String> = d(i)
            .and_then(|x| x["endpoints"].as_array())
            .map(|e| {
                e.iter()
                    .filter(|e| e["up"] == false)
                    .filter_map(|e| e["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if down.is_empty() {
            "-".into()
        } else {
            down.join(",")
        }
    });
    let styles = (0..rows)
        .map(|i| match d(i).and_then(|x| x["state"].as_str()) {
            None | Some("ok") => Style::new(),
            Some("backpressure") => Style::new().fg(Color::Yellow),
            Some(_) => Style::new().fg(Color::Red),
        })
        .collect();
    out.extend(t.render("destinations", rows, styles));

    let sources = list(s, "sources");
    let n = sources.len();
    let mut t = Table::new(width);
    t.text("SOURCE", 0, n, |i| str_of(&sources[i]["id"]));
    t.text("TYPE", 3, n, |i| str_of(&sources[i]["type"]));
    t.number("EVENTS/S", 1, n, |i| {
        rates.get(&format!("s/{}", sources[i]["id"].as_str().unwrap_or("")))
    });
    t.number("EVENTS", 2, n, |i| sources[i]["events"].to_string());
    t.number("REJECTED", 2, n, |i| {
        total(&sources[i]["rejected"]).to_string()
    });
    t.text("STATE", 1, n, |i| str_of(&sources[i]["state"]));
    out.extend(t.render("sources", n, vec![Style::new(); n]));

    let pipelines = list(s, "pipelines");
    if !pipelines.is_empty() {
        let n = pipelines.len();
        let mut t = Table::new(width);
        t.text("PIPELINE", 0, n, |i| str_of(&pipelines[i]["name"]));
        t.number("EVENTS/S", 1, n, |i| {
            rates.get(&format!(
                "p/{}",
                pipelines[i]["name"].as_str().unwrap_or("")
            ))
        });
        t.number("RECEIVED", 1, n, |i| pipelines[i]["received"].to_string());
        t.number("SENT", 2, n, |i| pipelines[i]["sent"].to_string());
        t.number("DROPPED", 2, n, |i| pipelines[i]["dropped"].to_string());
        t.number("EMITTED", 4, n, |i| pipelines[i]["emitted"].to_string());
        t.number("ERRORS", 3, n, |i| {
            list(&pipelines[i], "functions")
                .iter()
                .filter_map(|f| f["errors"].as_u64())
                .sum::<u64>()
                .to_string()
        });
        t.number("REDUCED", 2, n, |i| percent(&pipelines[i]["reduction"]));
        // Each function's reduction, in order: where the volume goes.
        t.text("BY FUNCTION", 5, n, |i| {
            list(&pipelines[i], "functions")
                .iter()
                .filter_map(|f| {
                    Some(format!(
                        "{} {}",
                        f["name"].as_str()?,
                        percent(&f["reduction"])
                    ))
                })
                .collect::<Vec<_>>()
                .join("  ")
        });
        out.extend(t.render("pipelines", n, vec![Style::new(); n]));
    }

    let routes = list(s, "routes");
    let n = routes.len();
    let mut t = Table::new(width);
    t.text("ROUTE", 0, n, |i| str_of(&routes[i]["name"]));
    t.text("DESTINATION", 1, n, |i| str_of(&routes[i]["destination"]));
    t.number("EVENTS/S", 1, n, |i| {
        rates.get(&format!("r/{}", routes[i]["name"].as_str().unwrap_or("")))
    });
    t.number("EVENTS", 2, n, |i| routes[i]["events"].to_string());
    t.text("FILTER", 3, n, |i| str_of(&routes[i]["filter"]));
    out.extend(t.render("routes", n, vec![Style::new(); n]));
    out
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or("").to_string()
}

/// Shorten text to `width` characters, with `…` if it was longer.
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut s: String = text.chars().take(width.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// A table laid out for a width: whole columns, by priority.
struct Table {
    width: usize,
    columns: Vec<Column>,
}

struct Column {
    header: &'static str,
    cells: Vec<String>,
    /// Lower is more important; 0 is always shown.
    priority: u8,
    /// Numbers right-aligned and never shortened; text may be.
    number: bool,
}

impl Table {
    fn new(width: usize) -> Self {
        Table {
            width,
            columns: Vec::new(),
        }
    }

    fn number(
        &mut self,
        header: &'static str,
        priority: u8,
        rows: usize,
        cell: impl Fn(usize) -> String,
    ) {
        self.push(header, priority, rows, cell, true);
    }

    /// Text that may be shortened (ids, types, filters, lists).
    fn text(
        &mut self,
        header: &'static str,
        priority: u8,
        rows: usize,
        cell: impl Fn(usize) -> String,
    ) {
        self.push(header, priority, rows, cell, false);
    }

    fn push(
        &mut self,
        header: &'static str,
        priority: u8,
        rows: usize,
        cell: impl Fn(usize) -> String,
        number: bool,
    ) {
        self.columns.push(Column {
            header,
            cells: (0..rows).map(cell).collect(),
            priority,
            number,
        });
    }

    /// The section: a title line, a header and one line per row.
    fn render(self, title: &str, rows: usize, styles: Vec<Style>) -> Vec<Line<'static>> {
        let natural: Vec<usize> = self
            .columns
            .iter()
            .map(|c| {
                c.cells
                    .iter()
                    .map(|v| v.chars().count())
                    .chain([c.header.chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        // Text may shrink to its header (or 8), numbers never.
        let least: Vec<usize> = self
            .columns
            .iter()
            .zip(&natural)
            .map(|(c, n)| {
                if c.number {
                    *n
                } else {
                    (*n).min(c.header.len().max(8))
                }
            })
            .collect();
        const GAP: usize = 2;
        let mut order: Vec<usize> = (0..self.columns.len()).collect();
        order.sort_by_key(|&i| (self.columns[i].priority, i));
        let mut shown = vec![false; self.columns.len()];
        let mut used = 0;
        for &i in &order {
            let need = least[i] + if used == 0 { 0 } else { GAP };
            if used + need <= self.width || self.columns[i].priority == 0 && used == 0 {
                shown[i] = true;
                used += need;
            }
        }
        // Leftover width goes to shortened text, first column first.
        let mut widths: Vec<usize> = least.clone();
        let mut spare = self.width.saturating_sub(used);
        for i in 0..self.columns.len() {
            if shown[i] && !self.columns[i].number {
                let more = (natural[i] - widths[i]).min(spare);
                widths[i] += more;
                spare -= more;
            }
        }
        let hidden: Vec<&str> = (0..self.columns.len())
            .filter(|&i| !shown[i])
            .map(|i| self.columns[i].header)
            .collect();
        let mut title_line = format!("── {title} ({rows})");
        if !hidden.is_empty() {
            title_line.push_str(&format!(" · wider for {}", hidden.join(", ")));
        }
        let title_line = fit(&title_line, self.width);
        let line = |cells: Vec<(String, usize, bool)>| -> String {
            let mut l = String::new();
            for (k, (v, w, right)) in cells.into_iter().enumerate() {
                if k > 0 {
                    l.push_str("  ");
                }
                let v = fit(&v, w);
                let pad = w.saturating_sub(v.chars().count());
                if right {
                    l.push_str(&" ".repeat(pad));
                    l.push_str(&v);
                } else {
                    l.push_str(&v);
                    l.push_str(&" ".repeat(pad));
                }
            }
            l.trim_end().to_string()
        };
        let visible: Vec<usize> = (0..self.columns.len()).filter(|&i| shown[i]).collect();
        let mut out = vec![
            Line::styled(title_line, Style::new().add_modifier(Modifier::BOLD)),
            Line::from(Span::styled(
                line(
                    visible
                        .iter()
                        .map(|&i| {
                            (
                                self.columns[i].header.to_string(),
                                widths[i],
                                self.columns[i].number,
                            )
                        })
                        .collect(),
                ),
                Style::new().add_modifier(Modifier::BOLD | Modifier::DIM),
            )),
        ];
        for (r, style) in (0..rows).zip(styles) {
            out.push(Line::styled(
                line(
                    visible
                        .iter()
                        .map(|&i| {
                            (
                                self.columns[i].cells.get(r).cloned().unwrap_or_default(),
                                widths[i],
                                self.columns[i].number,
                            )
                        })
                        .collect(),
                ),
                style,
            ));
        }
        out.push(Line::from(""));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(lines: &[Line]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn numbers_are_never_cut_and_narrow_tables_leave_columns_out() {
        let cells = ["0/10000", "123/10000"];
        let build = |width| {
            let mut t = Table::new(width);
            t.text("DESTINATION", 0, 2, |i| {
                format!("a-rather-long-destination-id-{i}")
            });
            t.text("STATE", 0, 2, |_| "backpressure".into());
            t.number("QUEUE", 2, 2, |i| cells[i].to_string());
            t.text("DOWN", 4, 2, |_| "http://10.0.0.1:8080/ingest".into());
            text(&t.render("destinations", 2, vec![Style::new(); 2]))
        };
        let wide = build(120);
        assert!(
            wide[2].contains("0/10000") && wide[3].contains("123/10000"),
            "{wide:?}"
        );
        assert!(
            wide[2].contains("a-rather-long-destination-id-0"),
            "{wide:?}"
        );
        let narrow = build(40);
        for l in &narrow {
            assert!(l.chars().count() <= 40, "{l:?} is wider than 40");
        }
        assert!(narrow[0].contains("wider for DOWN"), "{narrow:?}");
        assert!(
            narrow[3].contains("123/10000"),
            "the number is whole: {narrow:?}"
        );
        assert!(narrow[2].contains('…'), "the id is shortened: {narrow:?}");
    }

    #[test]
    fn scrolling_stays_within_the_list() {
        let mut s = Scroll {
            offset: 0,
            page: 10,
            lines: 35,
        };
        s.apply(Key::Up);
        assert_eq!(s.offset, 0);
        s.apply(Key::PageDown);
        s.apply(Key::PageDown);
        s.apply(Key::PageDown);
        assert_eq!(s.offset, 25, "the last page, not past it");
        s.apply(Key::Home);
        s.apply(Key::Down);
        assert_eq!(s.offset, 1);
        s.apply(Key::End);
        assert_eq!(s.offset, 25);
    }
}
