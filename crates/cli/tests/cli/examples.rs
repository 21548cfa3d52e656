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

#[test]
fn the_decision_corpus_passes_through_the_cli() {
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
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let corpus = repo().join("tests/corpus/quickstart.toml");
    let catalogs = repo().join("tests/corpus/company-catalogs.json");
    let args = |file: &std::path::Path| {
        vec![
            "policy".to_owned(),
            "test".to_owned(),
            file.display().to_string(),
            "--catalogs".to_owned(),
            catalogs.display().to_string(),
        ]
    };
    let argv = args(&corpus);
    let run = warden(&dir, &argv.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains(", 0 failed"), "{}", run.stdout);
    // A case that expects the wrong decision fails the run (exit 1) and is named.
    let wrong = tmp.path().join("wrong.toml");
    std::fs::write(
        &wrong,
        "[[case]]\nname = \"salaries are readable\"\nagent = \"support-assistant\"\ntool = \"hr.get_salary\"\nargs = { employee = \"e-7\" }\nexpect = \"allow\"\n",
    )
    .unwrap();
    let run = warden(
        &dir,
        &args(&wrong).iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stdout.contains("FAIL  salaries are readable"),
        "{}",
        run.stdout
    );
    // A malformed file: exit 3, with its line.
    std::fs::write(&wrong, "[[case]]\nname = \"x\"\nagent = [\n").unwrap();
    let run = warden(
        &dir,
        &args(&wrong).iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("line"), "{}", run.stderr);
}
