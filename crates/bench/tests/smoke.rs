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

#[test]
fn the_benchmark_runs_and_writes_its_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.json");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_warden-bench"))
        .args([
            "--duration",
            "600ms",
            "--warmup",
            "100ms",
            "--rounds",
            "2",
            "--connections",
            "2",
            "--agents",
            "250",
        ])
        .arg("--json")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
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
        let steal = json[target]["host_steal_pct"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&steal), "{target} steal {steal}");
    }
}
