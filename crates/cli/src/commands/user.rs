//! `warden user create|list|groups|password|login-link|disable|enable|token`:
//! Warden's own directory.

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

/// Group names: the same spelling as user names, each once, sorted.
fn group_names(raw: &[String]) -> Result<Vec<String>, Failure> {
    let mut groups = raw
        .iter()
        .map(|g| {
            UserName::new(g.as_str())
                .map(|n| n.to_string())
                .map_err(|e| Failure::Failed(anyhow!("invalid group `{g}`: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    groups.sort();
    groups.dedup();
    Ok(groups)
}

pub async fn run(cli: &Cli, cmd: &UserCommand) -> Outcome {
    let config = config(cli)?;
    let store = store(&config).await?;
    let tenant = tenant(cli, &config)?;
    match cmd {
        UserCommand::Create {
            name,
            role,
            groups,
            json,
        } => {
            let name = user_name(name)?;
            let role: UserRole = role.parse().map_err(|e: String| anyhow!(e))?;
            let groups = group_names(groups)?;
            let mut user = match store.create_user(&tenant, &name, &role.to_string()).await {
                Ok(u) => u,
                Err(e @ StoreError::Conflict(_)) => return Err(anyhow!(e).into()),
                Err(e) => return Err(anyhow!(e).context("cannot create the user").into()),
            };
            if !groups.is_empty() {
                user = store
                    .set_user_groups(&tenant, &name, &groups)
                    .await
                    .context("cannot set the user's groups")?;
            }
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
        UserCommand::Groups { name, groups, json } => {
            let name = user_name(name)?;
            let groups = group_names(groups)?;
            let user = store
                .set_user_groups(&tenant, &name, &groups)
                .await
                .context("cannot set the user's groups")?;
            audit_change(
                store.as_ref(),
                tenant.as_str(),
                &format!("user:{name}"),
                "user.groups",
            )
            .await?;
            if *json {
                print_json(&user)
            } else {
                println!("user `{name}` is in: {}", user.groups.join(", "));
                Ok(())
            }
        }
        UserCommand::Password { name, clear } => {
            let name = user_name(name)?;
            let hash = if *clear {
                None
            } else {
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .context("cannot read the password from standard input")?;
                let password = line.trim_end_matches(['\r', '\n']);
                Some(warden_identity::hash_password(password).map_err(|e| anyhow!(e))?)
            };
            store
                .set_user_password(&tenant, &name, hash.as_deref())
                .await
                .context("cannot set the password")?;
            audit_change(
                store.as_ref(),
                tenant.as_str(),
                &format!("user:{name}"),
                if *clear {
                    "user.password.clear"
                } else {
                    "user.password.set"
                },
            )
            .await?;
            println!(
                "console password of `{name}` {}",
                if *clear { "removed" } else { "set" }
            );
            Ok(())
        }
        UserCommand::LoginLink { name, ttl, json } => {
            let name = user_name(name)?;
            let user = store
                .user(&tenant, &name)
                .await
                .context("cannot read the user")?
                .ok_or_else(|| anyhow!("user `{name}` not found in tenant `{tenant}`"))?;
            if !user.active {
                return Err(Failure::Denied(anyhow!("user `{name}` is disabled")));
            }
            let ttl = duration("--ttl", Some(ttl), std::time::Duration::ZERO)?;
            if ttl.is_zero() || ttl > std::time::Duration::from_secs(24 * 3600) {
                return Err(anyhow!("--ttl must be more than 0 and at most 24h").into());
            }
            let token = warden_gateway::console::new_secret();
            let expires_at = super::unix_now().saturating_add(ttl.as_secs());
            store
                .create_login_link(&warden_store::LoginLink {
                    token_sha256: warden_gateway::console::secret_digest(&token),
                    tenant: tenant.clone(),
                    user: name.clone(),
                    expires_at,
                })
                .await
                .context("cannot record the login link")?;
            audit_change(
                store.as_ref(),
                tenant.as_str(),
                &format!("user:{name}"),
                "user.login_link",
            )
            .await?;
            let url = format!(
                "{}/console/login/link?token={token}",
                config.admin.public_url
            );
            if *json {
                print_json(&json!({
                    "url": url, "user": name, "expires_at": super::rfc3339(expires_at),
                }))
            } else {
                println!("{url}");
                eprintln!(
                    "one-time login link for `{name}`, valid until {}",
                    super::rfc3339(expires_at)
                );
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
            println!("{:<32} {:<10} {:<7} GROUPS", "NAME", "ROLE", "ACTIVE");
            for u in users {
                println!(
                    "{:<32} {:<10} {:<7} {}",
                    u.name,
                    u.role,
                    u.active,
                    u.groups.join(",")
                );
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
