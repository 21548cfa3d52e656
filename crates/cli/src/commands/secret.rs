//! `warden secret set|list|delete`: upstream credentials, sealed under the
//! master key before they reach the database. Values are never printed.

use std::io::Read as _;

use anyhow::{Context as _, anyhow};
use serde_json::json;
use warden_config::Config;
use warden_core::{TenantId, UpstreamName, UserName};
use warden_store::SecretRef;
use warden_vault::{MASTER_KEY_ENV, MasterKey, Secret};

use super::audit_change;
use crate::cli::{Cli, SecretCommand};
use crate::context::{config, print_json, store, tenant};
use crate::{Failure, Outcome};

/// The largest secret accepted.
const MAX_SECRET_BYTES: usize = 16 * 1024;

pub fn master_key(config: &Config) -> Result<MasterKey, Failure> {
    let text = match std::env::var(MASTER_KEY_ENV) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => std::fs::read_to_string(&config.identity.master_key).with_context(|| {
            format!(
                "no master key: set {MASTER_KEY_ENV} or create `{}`",
                config.identity.master_key.display()
            )
        })?,
    };
    MasterKey::from_base64(&text).map_err(|e| Failure::Invalid(anyhow!(e)))
}

fn place(
    config: &Config,
    tenant: &TenantId,
    upstream: &str,
    user: Option<&str>,
) -> Result<SecretRef, Failure> {
    let upstream = UpstreamName::new(upstream).map_err(|e| anyhow!(e))?;
    if config.upstream(upstream.as_str()).is_none() {
        return Err(anyhow!("no upstream `{upstream}` in the config").into());
    }
    Ok(SecretRef {
        tenant: tenant.clone(),
        upstream,
        user: user
            .map(UserName::new)
            .transpose()
            .map_err(|e| anyhow!(e))?,
    })
}

fn subject(at: &SecretRef) -> String {
    match &at.user {
        Some(u) => format!("secret:{}/{u}", at.upstream),
        None => format!("secret:{}", at.upstream),
    }
}

pub async fn run(cli: &Cli, cmd: &SecretCommand) -> Outcome {
    let config = config(cli)?;
    let store = store(&config).await?;
    let tenant_id = tenant(cli, &config)?;
    let tenant = tenant_id.as_str();
    match cmd {
        SecretCommand::Set {
            upstream,
            user,
            from_env,
        } => {
            let at = place(&config, &tenant_id, upstream, user.as_deref())?;
            let value = match from_env {
                Some(var) => std::env::var(var).with_context(|| format!("`{var}` is not set"))?,
                None => {
                    let mut text = String::new();
                    std::io::stdin()
                        .take(MAX_SECRET_BYTES as u64 + 1)
                        .read_to_string(&mut text)
                        .context("cannot read the secret from stdin")?;
                    text
                }
            };
            let value = value.trim_end_matches(['\n', '\r']);
            if value.is_empty() || value.len() > MAX_SECRET_BYTES {
                return Err(anyhow!("the secret must be 1 to {MAX_SECRET_BYTES} bytes").into());
            }
            if value.chars().any(char::is_control) {
                return Err(anyhow!("the secret holds control characters").into());
            }
            let sealed = master_key(&config)?
                .seal(&at.place(), &Secret::new(value))
                .map_err(|e| anyhow!(e))?;
            store
                .put_secret(&at, sealed)
                .await
                .context("cannot store the secret")?;
            audit_change(store.as_ref(), tenant, &subject(&at), "secret.set").await?;
            println!("stored the credential of `{}` (sealed)", subject(&at));
            Ok(())
        }
        SecretCommand::List { json } => {
            let list = store
                .list_secrets(&tenant_id)
                .await
                .context("cannot list secrets")?;
            if *json {
                return print_json(&json!({ "secrets": list }));
            }
            for at in list {
                println!("{}", subject(&at).trim_start_matches("secret:"));
            }
            Ok(())
        }
        SecretCommand::Delete { upstream, user } => {
            let at = place(&config, &tenant_id, upstream, user.as_deref())?;
            if !store.delete_secret(&at).await.context("cannot delete")? {
                return Err(anyhow!("no secret stored for `{}`", subject(&at)).into());
            }
            audit_change(store.as_ref(), tenant, &subject(&at), "secret.delete").await?;
            println!("deleted `{}`", subject(&at));
            Ok(())
        }
    }
}
