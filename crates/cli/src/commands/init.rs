//! `warden init DIR`: a working directory with everything Warden needs.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use serde_json::json;
use warden_config::Config;
use warden_identity::{CaFiles, SigningKey};
use warden_vault::MasterKey;

use crate::cli::InitArgs;
use crate::context::print_json;
use crate::{Failure, Outcome};

/// The config `warden init` writes.
pub const CONFIG_TEMPLATE: &str = include_str!("../../templates/warden.toml");
/// The starter policies `warden init` writes.
pub const STARTER_POLICIES: &str = include_str!("../../templates/starter.cedar");

fn write_new(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create `{}`", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write `{}`", path.display()))
}

#[cfg(unix)]
fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create `{}`", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write `{}`", path.display()))
}

#[cfg(not(unix))]
fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    write_new(path, text)
}

pub async fn run(args: &InitArgs) -> Outcome {
    let dir = &args.dir;
    let (config_text, policies) = match &args.example {
        None => (
            CONFIG_TEMPLATE.to_owned(),
            vec![
                (
                    "warden.cedarschema".to_owned(),
                    warden_policy::BASE_SCHEMA.to_owned(),
                ),
                ("starter.cedar".to_owned(), STARTER_POLICIES.to_owned()),
            ],
        ),
        Some(example) => read_example(example)?,
    };
    let config_path = dir.join("warden.toml");
    // Validate before writing anything.
    let config =
        Config::parse(&config_text, &config_path).map_err(|e| Failure::Invalid(anyhow!(e)))?;
    let db_path = config
        .storage_url
        .strip_prefix("sqlite://")
        .map(|p| PathBuf::from(p.split('?').next().unwrap_or(p)));
    let ca = CaFiles::in_dir(&config.identity.ca_dir);
    let mut existing: Vec<PathBuf> = [
        config_path.clone(),
        config.policy.dir.clone(),
        config.identity.signing_key.clone(),
        config.identity.master_key.clone(),
        config.audit.key.clone(),
        ca.cert.clone(),
        ca.key.clone(),
    ]
    .into_iter()
    .chain(db_path.clone())
    .filter(|p| p.exists())
    .collect();
    existing.dedup();
    if !existing.is_empty() {
        let list: Vec<String> = existing
            .iter()
            .map(|p| format!("`{}`", p.display()))
            .collect();
        return Err(anyhow!("refusing to overwrite {}", list.join(", ")).into());
    }
    fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    write_new(&config_path, &config_text)?;
    fs::create_dir_all(&config.policy.dir)
        .with_context(|| format!("cannot create `{}`", config.policy.dir.display()))?;
    for (name, text) in &policies {
        write_new(&config.policy.dir.join(name), text)?;
    }
    let key_path = &config.identity.signing_key;
    if let Some(parent) = key_path.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create `{}`", parent.display()))?;
    }
    write_secret(
        key_path,
        &SigningKey::generate_pem().map_err(|e| anyhow!(e))?,
    )?;
    let master = &config.identity.master_key;
    if let Some(parent) = master.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create `{}`", parent.display()))?;
    }
    write_secret(
        master,
        &MasterKey::generate_base64().map_err(|e| anyhow!(e))?,
    )?;
    let audit_key = &config.audit.key;
    warden_gateway::checkpoints::generate(audit_key).map_err(|e| anyhow!(e))?;
    let audit_public = warden_gateway::checkpoints::load_signer(&config.audit, false)
        .map_err(|e| anyhow!(e))?
        .verifier()
        .to_vkey();
    ca.create(&config.identity.trust_domain)
        .map_err(|e| anyhow!(e))?;
    warden_store::open(&config.storage_url)
        .await
        .context("cannot create the database")?;
    if args.json {
        return print_json(&json!({
            "dir": dir, "config": config_path, "policies": config.policy.dir,
            "signing_key": key_path, "master_key": master, "ca": config.identity.ca_dir,
            "audit_key": audit_key, "audit_public_key": audit_public,
            "storage": config.storage_url,
        }));
    }
    println!("initialised Warden in `{}`:", dir.display());
    println!("  config       {}", config_path.display());
    println!("  policies     {}", config.policy.dir.display());
    println!("  signing key  {}", key_path.display());
    println!("  master key   {}", master.display());
    println!("  CA           {}", config.identity.ca_dir.display());
    println!("  audit key    {}", audit_key.display());
    println!("               public: {audit_public}");
    println!("  database     {}", config.storage_url);
    println!(
        "next: cd {} && warden agent create my-agent && warden serve",
        dir.display()
    );
    Ok(())
}

/// `warden.toml` and the policy files of an example directory.
fn read_example(example: &Path) -> Result<(String, Vec<(String, String)>), Failure> {
    let config = fs::read_to_string(example.join("warden.toml"))
        .with_context(|| format!("cannot read `{}`", example.join("warden.toml").display()))?;
    let dir = example.join("policies");
    let mut files = Vec::new();
    for entry in fs::read_dir(&dir).with_context(|| format!("cannot read `{}`", dir.display()))? {
        let path = entry.context("cannot list the example policies")?.path();
        if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("cedar" | "cedarschema")
        ) {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            files.push((
                name,
                fs::read_to_string(&path)
                    .with_context(|| format!("cannot read `{}`", path.display()))?,
            ));
        }
    }
    files.sort();
    Ok((config, files))
}
