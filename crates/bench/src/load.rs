//! The load generator: keep-alive HTTP/1.1 connections (hyper), closed loop
//! or at a fixed rate. At a fixed rate, a request that is sent late because
//! the previous answer was late counts from when it was due, so queueing is
//! not hidden (no coordinated omission).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// One connection's work.
#[derive(Debug, Clone)]
pub struct Conn {
    /// Where to send.
    pub addr: SocketAddr,
    /// The path (`/mcp` or `/mcp/bench`).
    pub path: String,
    /// `Authorization: Bearer` token, if any.
    pub token: Option<String>,
    /// The tool to call.
    pub tool: String,
}

/// What one connection measured.
#[derive(Debug, Default)]
pub struct Sample {
    /// Latencies in microseconds.
    pub latencies_us: Vec<u32>,
    /// Failed requests (transport errors, non-200, JSON-RPC errors).
    pub errors: u64,
}

fn body(id: u64, tool: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{"id":"c-{id}","limit":5}}}}}}"#
    ))
}

/// Runs one connection for `duration`; `interval` sets a fixed rate.
pub async fn run(
    conn: Conn,
    duration: Duration,
    interval: Option<Duration>,
) -> anyhow::Result<Sample> {
    let stream = tokio::net::TcpStream::connect(conn.addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut sample = Sample::default();
    let start = Instant::now();
    let mut id: u64 = 0;
    while start.elapsed() < duration {
        // At a fixed rate, a request counts from when it was due if the
        // connection fell behind (the server was slow: queueing is not
        // hidden), and from when the timer woke it otherwise (the timer's
        // millisecond granularity is not the server's latency).
        let due = match interval {
            Some(every) => {
                let due = start + every * u32::try_from(id).unwrap_or(u32::MAX);
                if due > Instant::now() {
                    tokio::time::sleep_until(due.into()).await;
                    Instant::now()
                } else {
                    due
                }
            }
            None => Instant::now(),
        };
        id += 1;
        let mut req = hyper::Request::post(&conn.path)
            .header("host", conn.addr.to_string())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(token) = &conn.token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let req = req.body(Full::new(body(id, &conn.tool)))?;
        let ok = match sender.send_request(req).await {
            Ok(resp) => {
                let status = resp.status();
                match resp.into_body().collect().await {
                    Ok(b) => status == 200 && !b.to_bytes().windows(8).any(|w| w == b"\"error\":"),
                    Err(_) => false,
                }
            }
            Err(_) => false,
        };
        if ok {
            let us = due.elapsed().as_micros();
            sample
                .latencies_us
                .push(u32::try_from(us).unwrap_or(u32::MAX));
        } else {
            sample.errors += 1;
            if sender.ready().await.is_err() {
                anyhow::bail!("the connection to {} broke", conn.addr);
            }
        }
    }
    Ok(sample)
}
