//! The machine's own stalls: how long a thread that asks to sleep a
//! moment on an otherwise idle core waits past that moment. Measured
//! before the rounds, on each core the run uses, so that a run's tail can
//! be read against the machine it ran on: a virtual CPU that the host
//! preempts, or that a kernel thread holds for milliseconds, delays every
//! request that needs that core then, whatever serves it. Such stalls do
//! not all show as steal (`/proc/stat`): a kernel thread's are the guest's
//! own time, and not every hypervisor reports steal.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How long the probe asks to sleep each time: the spacing of requests at
/// 5,000 requests/s.
pub const NAP: Duration = Duration::from_micros(200);

/// A wake-up this much later than asked counts as a stall: as long as
/// Warden's whole p99 budget (issue 7).
pub const STALL: Duration = Duration::from_millis(1);

/// What the probe saw on one core.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stalls {
    /// Naps taken.
    pub naps: u64,
    /// Wake-ups at least [`STALL`] late.
    pub stalls: u64,
    /// The latest wake-up, in µs past the time asked for.
    pub longest_us: u64,
    /// All the time lost to stalls, in ms.
    pub stalled_ms: f64,
    /// How late the median wake-up was, in µs (timer slack and the wake-up
    /// itself: what every nap costs).
    pub median_late_us: u64,
    /// The time probed, in seconds.
    pub seconds: f64,
}

impl Stalls {
    /// The summary of naps that woke `late` past their time each, over
    /// `seconds`.
    #[must_use]
    pub fn of(mut late: Vec<Duration>, seconds: f64) -> Self {
        late.sort_unstable();
        let stalled: Vec<&Duration> = late.iter().filter(|l| **l >= STALL).collect();
        let micros = |d: Option<&Duration>| {
            d.map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        };
        Self {
            naps: late.len() as u64,
            stalls: stalled.len() as u64,
            longest_us: micros(late.last()),
            stalled_ms: stalled.iter().map(|d| d.as_secs_f64() * 1e3).sum(),
            median_late_us: micros(late.get(late.len() / 2)),
            seconds,
        }
    }

    /// Stalls per second probed.
    #[must_use]
    pub fn per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.stalls as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Naps [`NAP`] at a time on the calling thread for `duration`, noting
/// how late each wake-up was.
#[must_use]
pub fn probe(duration: Duration) -> Stalls {
    let start = Instant::now();
    let naps = duration.as_micros() / NAP.as_micros().max(1);
    let mut late = Vec::with_capacity(usize::try_from(naps).unwrap_or(0).min(1 << 20));
    while start.elapsed() < duration {
        let asked = Instant::now();
        std::thread::sleep(NAP);
        late.push(asked.elapsed().saturating_sub(NAP));
    }
    Stalls::of(late, start.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_is_a_wake_up_a_millisecond_late_or_more() {
        let us = Duration::from_micros;
        let late = vec![us(60), us(999), us(80), us(1000), us(4200), us(70)];
        let s = Stalls::of(late, 2.0);
        assert_eq!(s.naps, 6);
        assert_eq!(s.stalls, 2, "1000 µs counts, 999 µs does not");
        assert_eq!(s.longest_us, 4200);
        assert!((s.stalled_ms - 5.2).abs() < 1e-9, "{}", s.stalled_ms);
        assert_eq!(s.median_late_us, 999);
        assert!((s.per_second() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn no_naps_no_stalls() {
        let s = Stalls::of(Vec::new(), 0.0);
        assert_eq!((s.naps, s.stalls, s.longest_us), (0, 0, 0));
        assert!(s.per_second().abs() < f64::EPSILON);
    }

    #[test]
    fn the_probe_naps_for_the_time_it_is_given() {
        let s = probe(Duration::from_millis(30));
        assert!(s.seconds >= 0.03, "{s:?}");
        // Each nap is at least NAP long: no more naps than fit.
        assert!(s.naps >= 1 && s.naps <= 150, "{s:?}");
    }
}
