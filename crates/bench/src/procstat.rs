//! CPU time and peak memory of a process, from `/proc` (Linux).

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ, 100 on Linux).
const TICKS: f64 = 100.0;

/// User + system CPU seconds the process has used.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // After the command: state (0), ..., utime (11), stime (12).
    Ok((field(11) + field(12)) as f64 / TICKS)
}

/// Peak resident memory (VmHWM) in MB.
pub fn peak_rss_mb(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    Ok(kb / 1024.0)
}

/// The machine's CPU time since boot, from `/proc/stat`, in ticks: what the
/// hypervisor took from it (steal) and all of it.
pub fn host_ticks() -> anyhow::Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    steal_and_total(&stat).ok_or_else(|| anyhow::anyhow!("no `cpu` line in /proc/stat"))
}

/// Steal and total ticks of the `cpu` line of a `/proc/stat` text (user,
/// nice, system, idle, iowait, irq, softirq, steal; guest time is already
/// within user).
fn steal_and_total(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    Some((*ticks.get(7)?, ticks.iter().sum()))
}

/// The share of `(steal, total)` ticks stolen, in percent.
#[must_use]
pub fn steal_pct((steal, total): (u64, u64)) -> f64 {
    if total == 0 {
        0.0
    } else {
        100.0 * steal as f64 / total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steal_is_read_from_the_cpu_line() {
        let stat = "cpu  100 5 50 800 10 0 5 30 7 0\ncpu0 50 2 25 400 5 0 2 15 3 0\nintr 1 2\n";
        assert_eq!(steal_and_total(stat), Some((30, 1000)));
        assert!((steal_pct((30, 1000)) - 3.0).abs() < 1e-9);
        assert!(steal_pct((0, 0)).abs() < 1e-9);
    }

    #[test]
    fn a_stat_without_a_full_cpu_line_is_refused() {
        assert_eq!(steal_and_total(""), None);
        assert_eq!(steal_and_total("cpu0 1 2 3 4 5 6 7 8\n"), None);
        assert_eq!(steal_and_total("cpu  1 2 3\n"), None);
        assert_eq!(steal_and_total("cpu  1 2 x 4 5 6 7 8\n"), None);
    }

    #[test]
    fn this_machine_has_a_cpu_line() {
        let (steal, total) = host_ticks().unwrap();
        assert!(total > 0 && steal <= total);
    }
}
