//! `sluice tap`: print a live sample of the events passing a source, route, pipeline
//! or destination, one JSON event per line on stdout. When this client
//! reads too slowly the server skips samples (never events) and says how
//! many; that goes to stderr, so stdout stays pure NDJSON.

use std::io::Write;

use anyhow::{Context, bail};

use super::ApiClient;

pub struct TapArgs {
    pub point: (&'static str, String),
    pub filter: Option<String>,
    pub rate: u64,
    pub limit: Option<u64>,
}

pub async fn run(client: &ApiClient, args: TapArgs) -> anyhow::Result<()> {
    let mut query: Vec<(&str, String)> = vec![
        (args.point.0, args.point.1.clone()),
        ("rate", args.rate.to_string()),
    ];
    if let Some(f) = &args.filter {
        query.push(("filter", f.clone()));
    }
    if let Some(n) = args.limit {
        query.push(("limit", n.to_string()));
    }
    let mut resp = client
        .get("/api/v1/tap")
        .query(&query)
        .send()
        .await
        .with_context(|| format!("cannot reach the sluice API at {}", client.base))?;
    if !resp.status().is_success() {
        let code = resp.status();
        let body = resp.text().await.unwrap_or_default();
        let msg = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or(body);
        bail!("{code}: {msg}");
    }
    eprintln!(
        "tapping {} `{}` (at most {}/s; Ctrl-C to stop)",
        args.point.0, args.point.1, args.rate
    );
    let stdout = std::io::stdout();
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let chunk = tokio::select! {
            c = resp.chunk() => c.context("the tap stream broke")?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let Some(chunk) = chunk else { return Ok(()) };
        pending.extend_from_slice(&chunk);
        let mut out = stdout.lock();
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            print_line(&mut out, &line)?;
        }
        out.flush()?;
    }
}

/// `{"event": E}` prints E; `{"missed": N}` goes to stderr.
fn print_line(out: &mut impl Write, line: &[u8]) -> anyhow::Result<()> {
    #[derive(serde::Deserialize)]
    struct Line<'a> {
        #[serde(borrow)]
        event: Option<&'a serde_json::value::RawValue>,
        missed: Option<u64>,
    }
    let Ok(l) = serde_json::from_slice::<Line>(line) else {
        return Ok(());
    };
    if let Some(e) = l.event {
        out.write_all(e.get().as_bytes())?;
        out.write_all(b"\n")?;
    }
    if let Some(n) = l.missed {
        eprintln!(
            "tap: {n} samples missed so far (this client read too slowly; no events were lost)"
        );
    }
    Ok(())
}
