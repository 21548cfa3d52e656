//! `warden key rotate` and `warden ca init|rotate|bundle`.

use anyhow::{Context as _, anyhow};
use serde_json::json;
use warden_identity::{CaFiles, rotate};

use super::audit_change;
use crate::Outcome;
use crate::cli::{CaCommand, Cli, KeyCommand};
use crate::context::{config, print_json, store};

pub async fn run_key(cli: &Cli, cmd: &KeyCommand) -> Outcome {
    let KeyCommand::Rotate { json } = cmd;
    let config = config(cli)?;
    let store = store(&config).await?;
    let id = &config.identity;
    // The old key verifies until every token it signed has expired.
    let keep = id.max_token_ttl + id.leeway;
    let kid = rotate(&id.signing_key, keep).map_err(|e| anyhow!(e))?;
    audit_change(
        store.as_ref(),
        id.default_tenant.as_str(),
        &format!("key:{kid}"),
        "key.rotate",
    )
    .await?;
    if *json {
        return print_json(&json!({ "kid": kid, "previous_valid_for_secs": keep.as_secs() }));
    }
    println!(
        "new signing key `{kid}`; the previous key verifies for {} more",
        humantime::format_duration(keep)
    );
    Ok(())
}

pub async fn run_ca(cli: &Cli, cmd: &CaCommand) -> Outcome {
    let config = config(cli)?;
    let id = &config.identity;
    let files = CaFiles::in_dir(&id.ca_dir);
    match cmd {
        CaCommand::Bundle => {
            let bundle = std::fs::read_to_string(&files.bundle)
                .with_context(|| format!("cannot read `{}`", files.bundle.display()))?;
            print!("{bundle}");
            return Ok(());
        }
        CaCommand::Init => files.create(&id.trust_domain).map_err(|e| anyhow!(e))?,
        CaCommand::Rotate { drop_previous } => {
            if !files.exists() {
                return Err(
                    anyhow!("no CA in `{}`: use `warden ca init`", id.ca_dir.display()).into(),
                );
            }
            files
                .rotate(&id.trust_domain, *drop_previous)
                .map_err(|e| anyhow!(e))?;
        }
    }
    let store = store(&config).await?;
    let operation = match cmd {
        CaCommand::Init => "ca.init",
        _ => "ca.rotate",
    };
    audit_change(
        store.as_ref(),
        id.default_tenant.as_str(),
        &format!("ca:{}", id.trust_domain),
        operation,
    )
    .await?;
    println!(
        "CA ready in `{}` (trust bundle: bundle.pem)",
        id.ca_dir.display()
    );
    Ok(())
}
