//! What it costs this machine to hand work to a thread that waits: one
//! byte sent through a pipe to a process that echoes it back, there and
//! back many times, with the echo on the same CPU as the sender and on the
//! other one. Measured before the rounds, beside the stalls.
//!
//! A proxy hands every request on at least four times (from the client to
//! it, to the upstream, back, back to the client), each a wake-up of a
//! thread that was waiting, and under `--pin` each of those crosses from
//! one CPU to the other. On real hardware such a wake-up costs a few
//! microseconds of CPU; in a virtual machine waking a thread on another
//! virtual CPU may mean an interrupt sent through the hypervisor and a
//! halted CPU brought back, tens of microseconds, paid by the proxy and
//! the load alike. At a fixed rate, where requests arrive one at a time
//! and every wake-up is paid in full, that sets what even a bare proxy
//! costs per request; in the closed loop, a busy thread finds the next
//! request ready and most wake-ups are not needed.

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Round trips at most in one measurement.
pub const MAX_ROUND_TRIPS: usize = 100_000;

/// What one placement of the echo showed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HandOff {
    /// Round trips measured.
    pub round_trips: u64,
    /// The median round trip, in µs: two hand-offs, each to a thread that
    /// was waiting.
    pub median_us: f64,
    /// CPU time, of the sender and the echo together, per round trip, in
    /// µs; none where `/proc/<pid>/schedstat` cannot be read.
    pub cpu_us: Option<f64>,
}

impl HandOff {
    /// The summary of `round_trips`, over which the sender and the echo
    /// used `cpu_ns` between them (if known).
    #[must_use]
    pub fn of(mut round_trips: Vec<Duration>, cpu_ns: Option<u64>) -> Self {
        round_trips.sort_unstable();
        let n = round_trips.len() as u64;
        Self {
            round_trips: n,
            median_us: round_trips
                .get(round_trips.len() / 2)
                .map_or(0.0, |d| hundredths(d.as_secs_f64() * 1e6)),
            cpu_us: cpu_ns
                .filter(|_| n > 0)
                .map(|ns| hundredths(ns as f64 / 1e3 / n as f64)),
        }
    }
}

/// `x` to two decimals: what the figures are read to.
fn hundredths(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The echo: reads bytes and writes each back at once, until its input
/// ends; then the CPU time the calling thread used from the first byte on,
/// in ns (see [`cpu_ns`]; 0 where it cannot be read), as one line.
///
/// # Errors
/// Reading or writing failed (other than an interrupted call).
pub fn echo(input: &mut impl Read, output: &mut impl Write) -> std::io::Result<()> {
    let mut byte = [0u8; 1];
    let mut first = None;
    loop {
        match input.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => {
                if first.is_none() {
                    // Not the start-up before it (exec, arguments).
                    first = Some(cpu_ns("thread-self"));
                }
                output.write_all(&byte)?;
                output.flush()?;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let used = first
        .flatten()
        .zip(cpu_ns("thread-self"))
        .map_or(0, |(a, b)| b.saturating_sub(a));
    writeln!(output, "{used}")?;
    output.flush()
}

/// Sends one byte at a time to an echo and waits for it to come back,
/// for `duration` or [`MAX_ROUND_TRIPS`], whichever ends first: each
/// round trip's time, and the CPU time the calling thread used meanwhile
/// (if known).
///
/// # Errors
/// The echo did not answer (it ended, or a read or write failed).
pub fn ping(
    to: &mut impl Write,
    from: &mut impl Read,
    duration: Duration,
) -> std::io::Result<(Vec<Duration>, Option<u64>)> {
    let mut times = Vec::with_capacity(MAX_ROUND_TRIPS.min(1 << 16));
    let before = cpu_ns("thread-self");
    let start = Instant::now();
    let mut byte = [0u8; 1];
    while start.elapsed() < duration && times.len() < MAX_ROUND_TRIPS {
        let sent = Instant::now();
        to.write_all(b"x")?;
        to.flush()?;
        from.read_exact(&mut byte)?;
        times.push(sent.elapsed());
    }
    let used = before.and_then(|b| cpu_ns("thread-self").map(|a| a.saturating_sub(b)));
    Ok((times, used))
}

/// The CPU time, in ns, that `/proc/<who>/schedstat` reports (its first
/// field: time on a CPU, brought up to date whenever the thread leaves
/// the CPU): `thread-self` for the calling thread. None where it cannot be
/// read.
#[must_use]
pub fn cpu_ns(who: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{who}/schedstat")).ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_is_the_median_and_the_cpu_per_round_trip() {
        let us = Duration::from_micros;
        let h = HandOff::of(vec![us(40), us(5), us(41), us(6), us(100)], Some(150_004));
        assert_eq!(h.round_trips, 5);
        assert!((h.median_us - 40.0).abs() < 1e-9, "{h:?}");
        assert_eq!(h.cpu_us, Some(30.0), "30.0008 µs, to two decimals");
        let none = HandOff::of(Vec::new(), Some(1_000));
        assert_eq!((none.round_trips, none.cpu_us), (0, None));
        assert!(none.median_us.abs() < f64::EPSILON);
        assert_eq!(HandOff::of(vec![us(3)], None).cpu_us, None);
    }

    #[test]
    fn the_echo_sends_back_every_byte_then_its_cpu_time() {
        let mut out = Vec::new();
        echo(&mut &b"abc"[..], &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let (echoed, cpu) = text.split_at(3);
        assert_eq!(echoed, "abc");
        assert!(cpu.trim_end().parse::<u64>().is_ok(), "{text:?}");
        assert!(cpu.ends_with('\n'));
    }

    #[test]
    fn ping_times_round_trips_through_a_real_echo() {
        let (mut their_in, mut to) = std::io::pipe().unwrap();
        let (mut from, mut their_out) = std::io::pipe().unwrap();
        let echoing = std::thread::spawn(move || echo(&mut their_in, &mut their_out));
        let (times, cpu) = ping(&mut to, &mut from, Duration::from_millis(20)).unwrap();
        drop(to);
        echoing.join().unwrap().unwrap();
        assert!(!times.is_empty() && times.len() <= MAX_ROUND_TRIPS);
        assert!(times.iter().all(|t| *t > Duration::ZERO));
        if cpu_ns("thread-self").is_some() {
            assert!(cpu.is_some_and(|ns| ns > 0), "{cpu:?}");
        }
        // What is left is the echo's CPU time, one line: more than none,
        // as it waited for every byte.
        let mut rest = String::new();
        from.read_to_string(&mut rest).unwrap();
        let echo_ns = rest.trim_end().parse::<u64>().unwrap();
        if cpu_ns("thread-self").is_some() {
            assert!(echo_ns > 0, "{rest:?}");
        }
    }

    #[test]
    fn ping_fails_when_the_echo_is_gone() {
        let (their_in, mut to) = std::io::pipe().unwrap();
        let (mut from, their_out) = std::io::pipe().unwrap();
        drop((their_in, their_out));
        assert!(ping(&mut to, &mut from, Duration::from_secs(5)).is_err());
    }
}
