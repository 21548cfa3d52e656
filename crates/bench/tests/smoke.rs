//! The benchmark runs end to end and writes the documented JSON. (It measures
//! nothing here: debug build, a fraction of a second. Figures come from a
//! release build, see docs/performance.md.)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

/// Runs the benchmark briefly (2 connections, 100 ms of warm-up) with
/// `args`, the gateway under `wrap` if given; its JSON.
fn bench(args: &[&str], wrap: Option<&std::path::Path>) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.json");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_warden-bench"));
    if let Some(wrap) = wrap {
        command.env("WARDEN_BENCH_WRAP", wrap);
    }
    let status = command
        .args(["--warmup", "100ms", "--connections", "2"])
        .args(["--machine-check", "200ms"])
        .args(args)
        .arg("--json")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap()
}

#[test]
fn the_benchmark_runs_and_writes_its_json() {
    let json = bench(
        &["--duration", "600ms", "--rounds", "2", "--agents", "250"],
        None,
    );
    for target in ["direct", "floor", "warden"] {
        for key in ["rps", "p50_us", "p99_us", "cpu_ms_per_1k", "rss_mb"] {
            assert!(
                json[target][key].is_number(),
                "{target}.{key} missing: {json}"
            );
        }
        assert!(
            json[target]["requests"].as_u64().unwrap() > 0,
            "{target} answered nothing"
        );
        assert_eq!(json[target]["errors"], 0, "{target} had errors: {json}");
        // How busy the process was is its CPU per request times its rate.
        let busy = json[target]["cpu_busy_pct"].as_f64().unwrap();
        let per_call = json[target]["rps"].as_f64().unwrap()
            * json[target]["cpu_ms_per_1k"].as_f64().unwrap()
            / 1e4;
        assert!(busy > 0.0, "{target} used no CPU: {json}");
        assert!(
            (busy - per_call).abs() <= 1e-6 * busy.max(1.0),
            "{target} busy {busy}% against {per_call}% from its CPU per request"
        );
        let steal = json[target]["host_steal_pct"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&steal), "{target} steal {steal}");
        // The p99 budget is a fixed rate's: no share over it in a closed loop.
        assert!(json[target].get("over_budget_pct").is_none(), "{json}");
    }
    // The machine was probed first, unpinned: 200 µs naps for 200 ms.
    let probe = &json["machine"]["any_cpu"];
    let naps = probe["naps"].as_u64().unwrap();
    assert!((1..=1000).contains(&naps), "{json}");
    assert!(probe["stalls"].as_u64().unwrap() <= naps, "{json}");
    assert!(probe["seconds"].as_f64().unwrap() >= 0.2, "{json}");
    // Then a hand-off to an echo process and back, for as long.
    let hand_off = &json["hand_offs"]["any_cpu"];
    let round_trips = hand_off["round_trips"].as_u64().unwrap();
    assert!(round_trips > 0, "{json}");
    assert!(hand_off["median_us"].as_f64().unwrap() > 0.0, "{json}");
    // Linux: `/proc/<pid>/schedstat` is there to read.
    assert!(hand_off["cpu_us"].as_f64().unwrap() > 0.0, "{json}");
}

/// At a fixed rate every connection takes its turns, all of them: the
/// requests sent are the rate times the time measured, and the proxies'
/// figures say what share of their requests missed the p99 budget.
#[test]
fn a_fixed_rate_run_sends_its_rate_and_says_how_far_off_the_budget_is() {
    let json = bench(
        &[
            "--duration",
            "1s",
            "--rounds",
            "1",
            "--agents",
            "50",
            "--rate",
            "200",
        ],
        None,
    );
    for target in ["direct", "floor", "warden"] {
        assert_eq!(json[target]["errors"], 0, "{json}");
        // 200 turns of 200 a second, one each 5 ms, none skipped.
        assert_eq!(json[target]["requests"], 200, "{target}: {json}");
    }
    assert!(json["direct"].get("over_budget_pct").is_none(), "{json}");
    for target in ["floor", "warden"] {
        let over = json[target]["over_budget_pct"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&over), "{target}: {json}");
    }
}

/// `--pin` keeps every thread on its side: the proxies on CPU 0, the load
/// generator and the upstream on CPU 1 (the benchmark refuses a run where
/// any thread may run elsewhere, its own load generator's included).
#[test]
fn a_pinned_run_keeps_each_side_on_its_core() {
    if std::thread::available_parallelism().map_or(0, usize::from) < 2 {
        eprintln!("skipped: --pin needs two CPUs");
        return;
    }
    let json = bench(
        &[
            "--duration",
            "300ms",
            "--rounds",
            "1",
            "--agents",
            "50",
            "--pin",
        ],
        None,
    );
    assert_eq!(json["config"]["pinned"], true);
    for target in ["direct", "floor", "warden"] {
        assert!(json[target]["requests"].as_u64().unwrap() > 0, "{json}");
    }
}

#[test]
fn the_gateway_runs_under_the_wrapper_it_is_given() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    // A wrapper that notes what it was asked to run, then runs it (as
    // `valgrind` would, in the same process).
    let seen = dir.path().join("seen");
    let wrapper = dir.path().join("wrap.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\nexec \"$@\"\n",
            seen.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let json = bench(
        &["--duration", "300ms", "--rounds", "1", "--agents", "50"],
        Some(&wrapper),
    );
    assert!(json["warden"]["requests"].as_u64().unwrap() > 0);
    assert_eq!(json["warden"]["errors"], 0);
    // The gateway, and only the gateway, ran under it.
    let seen = std::fs::read_to_string(&seen).unwrap();
    let runs: Vec<&str> = seen.lines().collect();
    assert_eq!(runs.len(), 1, "{seen}");
    assert!(runs[0].contains("--role warden"), "{seen}");
}

/// A rate the pacer cannot keep (none, or past a million a second) is
/// refused before anything starts.
#[test]
fn an_impossible_rate_is_refused() {
    for rate in ["0", "1000001"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_warden-bench"))
            .args(["--rate", rate, "--machine-check", "0s"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "--rate {rate} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--rate"), "--rate {rate}: {err}");
    }
}
