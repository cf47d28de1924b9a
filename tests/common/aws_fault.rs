//! A fault proxy in front of a real AWS peer, for the partial failures no
//! local peer produces on demand. It forwards every request to the peer,
//! except that for `SendMessageBatch` and `PutRecords` the entries a rule
//! picks are taken out of the request before it is forwarded, and put back
//! into the peer's real answer as failed entries at their places. The peer
//! stays real and never sees a "failed" entry, so a retried entry arriving
//! there is the only copy.
//!
//! Both services speak AWS JSON (SQS 1.0, Kinesis 1.1), which the SDK
//! signs; moto and kinesalite do not check signatures, so rewriting the
//! body is invisible to them.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// How one entry fails: SQS's `{SenderFault, Code}` or Kinesis's
/// `ErrorCode`.
#[derive(Debug, Clone)]
pub struct Fault {
    pub sender_fault: bool,
    pub code: &'static str,
}

/// Picks, for an entry's text (an SQS body, Kinesis data decoded), the
/// fault it gets this time, if any.
pub type Rule = Arc<dyn Fn(&str) -> Option<Fault> + Send + Sync>;

pub struct FaultProxy {
    pub addr: SocketAddr,
}

impl FaultProxy {
    /// Listen on a free port, forwarding to `upstream` (`http://host:port`).
    pub async fn start(upstream: String, rule: Rule) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = reqwest::Client::new();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (client, upstream, rule) = (client.clone(), upstream.clone(), rule.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (client, upstream, rule) =
                            (client.clone(), upstream.clone(), rule.clone());
                        async move { Ok::<_, Infallible>(forward(req, &client, &upstream, &rule).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        FaultProxy { addr }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn forward(
    req: Request<Incoming>,
    client: &reqwest::Client,
    upstream: &str,
    rule: &Rule,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let op = target.rsplit('.').next().unwrap_or_default().to_string();
    let mut removed: Vec<(usize, Value, Fault)> = Vec::new();
    let body = match (op.as_str(), serde_json::from_slice::<Value>(&body)) {
        ("SendMessageBatch", Ok(mut v)) => {
            take(&mut v, "Entries", rule, &mut removed, |e| {
                e["MessageBody"].as_str().unwrap_or_default().to_string()
            });
            Bytes::from(v.to_string())
        }
        ("PutRecords", Ok(mut v)) => {
            take(&mut v, "Records", rule, &mut removed, |e| {
                use base64::Engine;
                let data = e["Data"].as_str().unwrap_or_default();
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .unwrap_or_default();
                String::from_utf8_lossy(&raw).into_owned()
            });
            Bytes::from(v.to_string())
        }
        _ => body,
    };
    // Every entry failed: the peer would refuse an empty batch, so the
    // answer is made here, as the peer would give it for no entries.
    if !removed.is_empty() && nothing_left(&body, &op) {
        let mut v = if op == "SendMessageBatch" {
            json!({ "Successful": [], "Failed": [] })
        } else {
            json!({ "FailedRecordCount": 0, "Records": [] })
        };
        if op == "SendMessageBatch" {
            put_back_sqs(&mut v, &removed);
        } else {
            put_back_kinesis(&mut v, &removed);
        }
        return Response::builder()
            .status(200)
            .header(
                "content-type",
                if op == "SendMessageBatch" {
                    "application/x-amz-json-1.0"
                } else {
                    "application/x-amz-json-1.1"
                },
            )
            .body(Full::new(Bytes::from(v.to_string())))
            .unwrap_or_default();
    }
    let mut r = client
        .request(parts.method.clone(), format!("{upstream}{}", parts.uri))
        .body(body.clone());
    for (k, v) in &parts.headers {
        if k != "host" && k != "content-length" {
            r = r.header(k, v);
        }
    }
    let resp = match r.send().await {
        Ok(r) => r,
        Err(e) => {
            return Response::builder()
                .status(502)
                .body(Full::new(Bytes::from(e.to_string())))
                .unwrap_or_default();
        }
    };
    let status = resp.status();
    let headers = resp.headers().clone();
    let answer = resp.bytes().await.unwrap_or_default();
    let answer = if status.is_success() && !removed.is_empty() {
        match serde_json::from_slice::<Value>(&answer) {
            Ok(mut v) => {
                if op == "SendMessageBatch" {
                    put_back_sqs(&mut v, &removed);
                } else {
                    put_back_kinesis(&mut v, &removed);
                }
                Bytes::from(v.to_string())
            }
            Err(_) => answer,
        }
    } else {
        answer
    };
    let mut out = Response::builder().status(status.as_u16());
    for (k, v) in &headers {
        if k != "content-length" && k != "transfer-encoding" {
            out = out.header(k, v);
        }
    }
    out.body(Full::new(answer)).unwrap_or_default()
}

fn nothing_left(body: &[u8], op: &str) -> bool {
    let key = if op == "SendMessageBatch" {
        "Entries"
    } else {
        "Records"
    };
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get(key).and_then(Value::as_array).map(Vec::is_empty))
        .unwrap_or(false)
}

/// Take out of `v[key]` the entries `rule` fails, remembering where.
fn take(
    v: &mut Value,
    key: &str,
    rule: &Rule,
    removed: &mut Vec<(usize, Value, Fault)>,
    text: impl Fn(&Value) -> String,
) {
    let Some(entries) = v.get_mut(key).and_then(Value::as_array_mut) else {
        return;
    };
    let mut kept = Vec::new();
    for (i, e) in entries.drain(..).enumerate() {
        match rule(&text(&e)) {
            Some(f) => removed.push((i, e, f)),
            None => kept.push(e),
        }
    }
    *entries = kept;
}

fn put_back_sqs(v: &mut Value, removed: &[(usize, Value, Fault)]) {
    let failed = v
        .as_object_mut()
        .map(|o| o.entry("Failed").or_insert_with(|| json!([])));
    if let Some(Value::Array(failed)) = failed {
        for (_, e, f) in removed {
            failed.push(json!({
                "Id": e["Id"], "SenderFault": f.sender_fault, "Code": f.code,
                "Message": format!("injected by the test's fault proxy: {}", f.code),
            }));
        }
    }
}

fn put_back_kinesis(v: &mut Value, removed: &[(usize, Value, Fault)]) {
    let Some(records) = v.get_mut("Records").and_then(Value::as_array_mut) else {
        return;
    };
    for (i, _, f) in removed {
        let at = (*i).min(records.len());
        records.insert(
            at,
            json!({ "ErrorCode": f.code, "ErrorMessage": "injected by the test's fault proxy" }),
        );
    }
    let failed = records
        .iter()
        .filter(|r| r.get("ErrorCode").is_some())
        .count();
    v["FailedRecordCount"] = json!(failed);
}
