//! `warden user create|list|disable|enable|token`: Warden's own directory.

use anyhow::{Context as _, anyhow};
use serde_json::json;
use warden_core::UserName;
use warden_identity::UserRole;
use warden_store::StoreError;

use super::audit_change;
use crate::cli::{Cli, UserCommand};
use crate::context::{config, duration, issuer, print_json, store, tenant};
use crate::{Failure, Outcome};

fn user_name(raw: &str) -> Result<UserName, Failure> {
    UserName::new(raw).map_err(|e| Failure::Failed(anyhow!(e)))
}

pub async fn run(cli: &Cli, cmd: &UserCommand) -> Outcome {
    let config = config(cli)?;
    let store = store(&config).await?;
    let tenant = tenant(cli, &config)?;
    match cmd {
        UserCommand::Create { name, role, json } => {
            let name = user_name(name)?;
            let role: UserRole = role.parse().map_err(|e: String| anyhow!(e))?;
            let user = match store.create_user(&tenant, &name, &role.to_string()).await {
                Ok(u) => u,
                Err(e @ StoreError::Conflict(_)) => return Err(anyhow!(e).into()),
                Err(e) => return Err(anyhow!(e).context("cannot create the user").into()),
            };
            audit_change(
                store.as_ref(),
                tenant.as_str(),
                &format!("user:{name}"),
                "user.create",
            )
            .await?;
            if *json {
                print_json(&user)
            } else {
                println!("created user `{name}` ({role}) in tenant `{tenant}`");
                Ok(())
            }
        }
        UserCommand::List { json } => {
            let users = store
                .list_users(&tenant)
                .await
                .context("cannot list users")?;
            if *json {
                return print_json(&json!({ "users": users }));
            }
            println!("{:<32} {:<10} ACTIVE", "NAME", "ROLE");
            for u in users {
                println!("{:<32} {:<10} {}", u.name, u.role, u.active);
            }
            Ok(())
        }
        UserCommand::Disable(r) | UserCommand::Enable(r) => {
            let active = matches!(cmd, UserCommand::Enable(_));
            let name = user_name(&r.name)?;
            let user = store
                .set_user_active(&tenant, &name, active)
                .await
                .context("cannot change the user")?;
            let operation = if active {
                "user.enable"
            } else {
                "user.disable"
            };
            audit_change(
                store.as_ref(),
                tenant.as_str(),
                &format!("user:{name}"),
                operation,
            )
            .await?;
            if r.json {
                print_json(&user)
            } else {
                println!(
                    "user `{name}` is {}",
                    if active { "enabled" } else { "disabled" }
                );
                Ok(())
            }
        }
        UserCommand::Token { name, ttl, json } => {
            let name = user_name(name)?;
            let user = store
                .user(&tenant, &name)
                .await
                .context("cannot read the user")?
                .ok_or_else(|| anyhow!("user `{name}` not found in tenant `{tenant}`"))?;
            if !user.active {
                return Err(Failure::Denied(anyhow!("user `{name}` is disabled")));
            }
            let role: UserRole = user.role.parse().map_err(|e: String| anyhow!(e))?;
            let ttl = duration("--ttl", ttl.as_deref(), config.identity.token_ttl)?;
            let issued = issuer(&config)?
                .issue_user(&tenant, &name, role, ttl)
                .map_err(|e| anyhow!(e))?;
            audit_change(
                store.as_ref(),
                tenant.as_str(),
                &format!("user:{name}"),
                "user.token",
            )
            .await?;
            super::token::print(&issued, *json)
        }
    }
}
