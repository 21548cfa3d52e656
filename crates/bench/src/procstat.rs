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

/// Each thread of process `pid`: its name and the CPUs it may run on
/// (`Cpus_allowed_list`, e.g. `1` or `0-1`).
pub fn thread_cpus(pid: u32) -> anyhow::Result<Vec<(String, String)>> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("status");
        // A thread that ended since the listing is no longer a concern.
        let Ok(status) = std::fs::read_to_string(&path) else {
            continue;
        };
        threads.push(name_and_cpus(&status).ok_or_else(|| {
            anyhow::anyhow!("no Name or Cpus_allowed_list in {}", path.display())
        })?);
    }
    Ok(threads)
}

/// The `Name` and `Cpus_allowed_list` of a `/proc/.../status` text.
fn name_and_cpus(status: &str) -> Option<(String, String)> {
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .map(|v| v.trim().to_owned())
    };
    Some((field("Name")?, field("Cpus_allowed_list")?))
}

/// The first thread of `threads` that may run on any CPU but `cpu`.
#[must_use]
pub fn not_only_on(threads: &[(String, String)], cpu: u32) -> Option<&(String, String)> {
    let only = cpu.to_string();
    threads.iter().find(|(_, cpus)| *cpus != only)
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

    #[test]
    fn a_threads_cpus_are_read_from_its_status() {
        let status = "Name:\ttokio-rt-worker\nState:\tS (sleeping)\nCpus_allowed:\t3\nCpus_allowed_list:\t0-1\nMems_allowed_list:\t0\n";
        assert_eq!(
            name_and_cpus(status),
            Some(("tokio-rt-worker".into(), "0-1".into()))
        );
        assert_eq!(name_and_cpus("Name:\tx\nCpus_allowed:\t3\n"), None);
        assert_eq!(name_and_cpus("Cpus_allowed_list:\t1\n"), None);
    }

    #[test]
    fn a_thread_allowed_elsewhere_is_found() {
        let pinned = [
            ("main".to_owned(), "1".to_owned()),
            ("worker".into(), "1".into()),
        ];
        assert_eq!(not_only_on(&pinned, 1), None);
        assert_eq!(not_only_on(&pinned, 0), pinned.first());
        for loose in ["0-1", "0,1", "10", ""] {
            let threads = [
                ("main".to_owned(), "1".to_owned()),
                ("worker".into(), loose.to_owned()),
            ];
            assert_eq!(
                not_only_on(&threads, 1).map(|(n, _)| n.as_str()),
                Some("worker"),
                "{loose}"
            );
        }
    }

    #[test]
    fn every_thread_of_this_process_is_listed() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (started, running) = std::sync::mpsc::channel::<()>();
        let other = std::thread::Builder::new()
            .name("listed-thread".into())
            .spawn(move || {
                // Named by now: a thread names itself as it starts.
                started.send(()).unwrap();
                rx.recv()
            })
            .unwrap();
        running.recv().unwrap();
        let threads = thread_cpus(std::process::id()).unwrap();
        assert!(
            threads
                .iter()
                .any(|(n, cpus)| n == "listed-thread" && !cpus.is_empty()),
            "{threads:?}"
        );
        drop(tx);
        other.join().unwrap().unwrap_err();
    }
}
