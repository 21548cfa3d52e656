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

/// Puts the calling thread under `SCHED_BATCH`. Threads it creates later
/// inherit the policy, so call it before the runtime starts.
///
/// # Errors
/// The policy could not be set (not Linux, or the kernel refused).
pub fn use_batch_scheduling() -> Result<(), String> {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::{
            NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
            set_thread_priority_and_policy, thread_native_id,
        };
        set_thread_priority_and_policy(
            thread_native_id(),
            ThreadPriority::Min,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch),
        )
        .map_err(|e| format!("cannot use SCHED_BATCH: {e:?}"))
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err("SCHED_BATCH is Linux only".into())
    }
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
        let inherited = std::thread::spawn(|| {
            assert!(!is_batch_scheduled(), "a new thread starts as normal");
            use_batch_scheduling().expect("SCHED_BATCH needs no privilege");
            assert!(is_batch_scheduled());
            std::thread::spawn(is_batch_scheduled)
                .join()
                .expect("thread")
        })
        .join()
        .expect("thread");
        assert!(inherited, "threads inherit the policy");
    }
}
