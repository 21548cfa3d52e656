//! The load generator: keep-alive HTTP/1.1 connections (hyper), closed loop
//! or at a fixed rate. At a fixed rate, every request counts from when it
//! was due, so queueing is not hidden (no coordinated omission), and the
//! connections take turns: at 5,000 requests/s over 16 connections one
//! request is due every 200 µs, not 16 at once every 3.2 ms ([`Schedule`]),
//! and a thread of its own hands each connection its turns as they fall
//! due ([`pace`]), not five at once each millisecond (tokio's timer).

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

/// When one connection's requests are due at a fixed rate: every
/// `every`, the first after `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// From the connection's start to its first request.
    pub offset: Duration,
    /// Between two of its requests.
    pub every: Duration,
}

impl Schedule {
    /// The schedules of `connections` connections sharing a total of
    /// `rate` requests/s: each sends one request per `connections / rate`
    /// seconds, and connection `i` starts `i / rate` seconds after the
    /// first, so that together they send one request every `1 / rate`
    /// seconds. (Started together, they sent their requests together: a
    /// burst of one per connection, which the server under test then
    /// queued, and which no fixed rate of single requests would send.)
    #[must_use]
    pub fn spread(connections: usize, rate: u32) -> Vec<Self> {
        let gap = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
        let n = u32::try_from(connections).unwrap_or(u32::MAX);
        (0..n)
            .map(|i| Self {
                offset: gap * i,
                every: gap * n,
            })
            .collect()
    }

    /// When request `k` (from 0) is due, after the connection's start
    /// (ever later with `k`, saturating).
    #[must_use]
    pub fn due(&self, k: u64) -> Duration {
        let every = u64::try_from(self.every.as_nanos()).unwrap_or(u64::MAX);
        self.offset
            .saturating_add(Duration::from_nanos(every.saturating_mul(k)))
    }
}

/// A connection's turns at a fixed rate: the instants its requests fall
/// due, each handed over once it has come ([`pace`]).
pub type Turns = tokio::sync::mpsc::UnboundedReceiver<Instant>;

/// Hands each connection its turns, from `start` until `duration` has
/// passed, as each falls due: `schedules[i]` sets connection `i`'s, and
/// the receiver `i` returned gets them. The turns of all connections are
/// handed out in the order they fall due, from a thread of its own that
/// sleeps until each: tokio's timer fires once a millisecond at most, so
/// connections whose turns fell in the same millisecond were woken
/// together and sent together, five requests at once at 5,000 a second,
/// a burst no fixed rate of single requests sends. The thread ends, and
/// the receivers with it, after the last turn (at once for a schedule
/// whose turns never advance).
///
/// # Errors
///
/// If the thread cannot be started.
pub fn pace(
    start: Instant,
    duration: Duration,
    schedules: &[Schedule],
) -> std::io::Result<(std::thread::JoinHandle<()>, Vec<Turns>)> {
    let (senders, receivers): (Vec<_>, Vec<_>) = schedules
        .iter()
        .map(|_| tokio::sync::mpsc::unbounded_channel())
        .unzip();
    let schedules = schedules.to_vec();
    let pacer = std::thread::Builder::new()
        .name("pacer".into())
        .spawn(move || {
            if schedules.iter().any(|s| s.every.is_zero()) {
                return;
            }
            let mut next = vec![0u64; schedules.len()];
            loop {
                // The connection whose next turn falls due first.
                let Some((i, due)) = schedules
                    .iter()
                    .zip(&next)
                    .map(|(s, k)| s.due(*k))
                    .enumerate()
                    .min_by_key(|(_, due)| *due)
                else {
                    return;
                };
                if due >= duration {
                    return;
                }
                let at = start + due;
                let wait = at.saturating_duration_since(Instant::now());
                if !wait.is_zero() {
                    std::thread::sleep(wait);
                }
                if let (Some(tx), Some(k)) = (senders.get(i), next.get_mut(i)) {
                    // A connection that has ended (it broke) takes no more.
                    let _ = tx.send(at);
                    *k += 1;
                }
            }
        })?;
    Ok((pacer, receivers))
}

/// Runs one connection: closed loop for `duration`, or, given `turns`,
/// one request per turn, each counted from when it fell due.
pub async fn run(
    conn: Conn,
    duration: Duration,
    mut turns: Option<Turns>,
) -> anyhow::Result<Sample> {
    let stream = tokio::net::TcpStream::connect(conn.addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut sample = Sample::default();
    let start = Instant::now();
    let mut id: u64 = 0;
    loop {
        // At a fixed rate a request counts from when it was due, however
        // late it is sent: the previous answer was late, or the load's
        // core was held (queueing is not hidden).
        let due = match turns.as_mut() {
            Some(turns) => match turns.recv().await {
                Some(due) => due,
                None => break,
            },
            None if start.elapsed() < duration => Instant::now(),
            None => break,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_take_turns_at_a_fixed_rate() {
        let all = Schedule::spread(16, 5000);
        assert_eq!(all.len(), 16);
        // Every due time of every connection over one second, in order:
        // one request each 200 µs, none two at once.
        let mut due: Vec<Duration> = all
            .iter()
            .flat_map(|s| (0..313).map(move |k| s.due(k)))
            .filter(|d| *d < Duration::from_secs(1))
            .collect();
        due.sort_unstable();
        assert_eq!(due.len(), 5000);
        for (k, d) in due.iter().enumerate() {
            let want = Duration::from_micros(200) * u32::try_from(k).unwrap();
            assert!(
                d.abs_diff(want) < Duration::from_micros(1),
                "request {k} due at {d:?}, not {want:?}"
            );
        }
        // Each connection keeps the rate's share: 5000 / 16 requests/s.
        assert!(all.iter().all(|s| s.every == Duration::from_micros(3200)));
    }

    #[test]
    fn turns_are_handed_out_as_they_fall_due_and_end_with_the_duration() {
        let start = Instant::now() + Duration::from_millis(5);
        let schedules = Schedule::spread(3, 1000);
        let (pacer, turns) = pace(start, Duration::from_millis(30), &schedules).unwrap();
        // Each connection's turns, with when each was received.
        let got: Vec<Vec<(Instant, Instant)>> = turns
            .into_iter()
            .map(|mut rx| {
                std::iter::from_fn(|| rx.blocking_recv().map(|due| (due, Instant::now()))).collect()
            })
            .collect();
        pacer.join().unwrap();
        // One turn a millisecond in all, taken in turn: connection i has
        // the milliseconds i, i + 3, ... before 30.
        for (i, turns) in got.iter().enumerate() {
            let want: Vec<Instant> = (0..30)
                .filter(|ms| ms % 3 == i)
                .map(|ms| start + Duration::from_millis(ms as u64))
                .collect();
            let dues: Vec<Instant> = turns.iter().map(|(due, _)| *due).collect();
            assert_eq!(dues, want, "connection {i}");
            // None handed over before it fell due.
            assert!(
                turns.iter().all(|(due, seen)| seen >= due),
                "connection {i}"
            );
        }
    }

    #[test]
    fn a_turn_far_ahead_saturates_instead_of_overflowing() {
        let s = Schedule::spread(16, 1_000_000)[15];
        // Past u32::MAX turns the due times still move on, and never wrap.
        assert!(s.due(u64::from(u32::MAX) + 1) > s.due(u64::from(u32::MAX)));
        assert!(s.due(u64::MAX) >= s.due(u64::MAX / 2));
    }

    #[test]
    fn one_connection_sends_at_the_whole_rate() {
        let all = Schedule::spread(1, 1000);
        assert_eq!(
            all,
            vec![Schedule {
                offset: Duration::ZERO,
                every: Duration::from_millis(1)
            }]
        );
        assert_eq!(all[0].due(3), Duration::from_millis(3));
    }
}
