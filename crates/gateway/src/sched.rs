//! How the gateway's threads are scheduled.
//!
//! Under Linux's default policy a thread that wakes another on the same core
//! is often preempted by it at once. For the gateway that is the worst
//! order: each request hands its audit record to the writer thread, the
//! writer wakes, commits that one record with an fsync, and wakes the request
//! thread back — two context switches and a commit per request. Under
//! `SCHED_BATCH` a woken thread waits for the running one to block or to use
//! up its time slice, so the request threads first take every request that
//! is ready as far as its audit record, and the writer then commits all those
//! records at once (measured in docs/performance.md). Fairness between
//! threads and processes is unchanged; only wake-up preemption is given up.

/// Puts the calling thread under `SCHED_BATCH`, at the niceness it already
/// has. Threads it creates later inherit both, so call it before the
/// runtime starts.
///
/// The niceness is kept on purpose: `thread_priority` sets one with every
/// policy, and its `ThreadPriority::Min` is nice 19. The gateway ran at
/// nice 19 (weight 15 against 1,024 at nice 0) until 2026-12-07: every
/// other process on its core outweighed it 68 to 1, and the indexer under
/// `SCHED_IDLE` (weight 3) took a sixth of the core from a busy request
/// thread instead of the 0.3% it was meant to (docs/performance.md).
///
/// # Errors
/// The policy could not be set (not Linux, or the kernel refused).
pub fn use_batch_scheduling() -> Result<(), String> {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::{
            NormalThreadSchedulePolicy, ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy,
            set_thread_priority_and_policy, thread_native_id,
        };
        let batch = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch);
        let nice = current_niceness()?;
        // The crate maps 0..=99 onto niceness 19..=-20: the value it maps
        // to this thread's own.
        let priority = (0..=99u8)
            .filter_map(|p| ThreadPriorityValue::try_from(p).ok())
            .map(ThreadPriority::Crossplatform)
            .find(|p| p.to_posix(batch).ok() == Some(nice))
            .ok_or_else(|| format!("no priority value keeps niceness {nice}"))?;
        set_thread_priority_and_policy(thread_native_id(), priority, batch)
            .map_err(|e| format!("cannot use SCHED_BATCH: {e:?}"))
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err("SCHED_BATCH is Linux only".into())
    }
}

/// The calling thread's niceness (`/proc/thread-self/stat`, field 19).
#[cfg(target_os = "linux")]
fn current_niceness() -> Result<i32, String> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat")
        .map_err(|e| format!("cannot read the thread's niceness: {e}"))?;
    // The name (field 2) is in parentheses and may hold spaces: count the
    // fields after its closing one, which is field 3.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(16))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| "cannot read the thread's niceness".to_owned())
}

/// Whether the calling thread runs under `SCHED_BATCH`.
#[must_use]
pub fn is_batch_scheduled() -> bool {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::{
            NormalThreadSchedulePolicy, ThreadSchedulePolicy, thread_native_id,
            unix::thread_schedule_policy_param,
        };
        thread_schedule_policy_param(thread_native_id()).is_ok_and(|(policy, _)| {
            policy == ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch)
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn a_thread_and_the_threads_it_starts_run_batch_scheduled() {
        let nice = current_niceness().expect("niceness");
        let inherited = std::thread::spawn(|| {
            assert!(!is_batch_scheduled(), "a new thread starts as normal");
            use_batch_scheduling().expect("SCHED_BATCH needs no privilege");
            assert!(is_batch_scheduled());
            std::thread::spawn(|| (is_batch_scheduled(), current_niceness()))
                .join()
                .expect("thread")
        })
        .join()
        .expect("thread");
        // The policy is inherited, and the niceness is the one the threads
        // had (it was 19 with `ThreadPriority::Min`).
        assert_eq!(inherited, (true, Ok(nice)), "threads inherit the policy");
    }
}
