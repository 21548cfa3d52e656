//! The committed decision corpus (`tests/corpus/`) through the library: the
//! quickstart's policies, the example company's tool catalogs and the
//! labels of its `warden.toml`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::path::Path;

use warden_core::UpstreamName;
use warden_mcp::ToolCatalog;
use warden_policy::{
    Catalogs, LabelOverride, Labels, PolicyEngine, PolicySources, parse_cases, run_cases,
};

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

#[test]
fn the_quickstart_corpus_passes() {
    let catalogs: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(repo().join("tests/corpus/company-catalogs.json")).unwrap(),
    )
    .unwrap();
    let catalogs: Catalogs = catalogs
        .into_iter()
        .map(|(u, c)| {
            (
                UpstreamName::new(u).unwrap(),
                ToolCatalog::from_json(c).unwrap(),
            )
        })
        .collect();
    // The labels of examples/quickstart/warden.toml.
    let config =
        warden_config::Config::load(&repo().join("examples/quickstart/warden.toml")).unwrap();
    let mut labels = Labels::default();
    for u in &config.upstreams {
        let o = |l: &warden_config::ToolLabelConfig| LabelOverride {
            effect: l.effect.as_deref().map(|e| e.parse().unwrap()),
            classification: l.classification.as_deref().map(|c| c.parse().unwrap()),
            external: l.external,
        };
        labels.upstreams.insert(u.name.to_string(), o(&u.labels));
        for (tool, l) in &u.tool_labels {
            labels.tools.insert(format!("{}/{tool}", u.name), o(l));
        }
    }
    let sources = PolicySources::read_dir(&repo().join("examples/quickstart/policies")).unwrap();
    let engine = PolicyEngine::build_with(&sources, &catalogs, &labels).unwrap();
    let cases =
        parse_cases(&std::fs::read_to_string(repo().join("tests/corpus/quickstart.toml")).unwrap())
            .unwrap();
    assert!(cases.len() >= 15);
    let failed: Vec<String> = run_cases(&engine, &cases)
        .into_iter()
        .filter(|r| !r.passed())
        .map(|r| format!("{}: {}", r.name, r.problems.join("; ")))
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
}
