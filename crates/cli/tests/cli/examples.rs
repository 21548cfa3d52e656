//! Every example configuration and policy folder in the repository is valid.

use crate::{repo, warden};

#[test]
fn the_quickstart_example_initialises_and_parses() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("qs");
    let example = repo().join("examples/quickstart");
    let run = warden(
        tmp.path(),
        &[
            "init",
            dir.to_str().unwrap(),
            "--example",
            example.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let config = warden_config::Config::load(&dir.join("warden.toml")).unwrap();
    assert_eq!(config.upstreams.len(), 4);
    // Its policies need the company's tool catalogs: validated end to end in
    // examples/company/tests/quickstart.rs.
}
