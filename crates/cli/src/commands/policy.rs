//! `warden policy check` and `warden policy test`.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use serde_json::json;
use warden_core::UpstreamName;
use warden_gateway::{Credentials, Upstream};
use warden_mcp::ToolCatalog;
use warden_policy::{Catalogs, PolicyEngine, PolicySources, parse_cases, run_cases};

use crate::cli::{Cli, PolicyCommand};
use crate::context::{config, print_json, store};
use crate::{Failure, Outcome};

pub async fn run(cli: &Cli, cmd: &PolicyCommand) -> Outcome {
    match cmd {
        PolicyCommand::Check { live, json } => check(cli, *live, *json).await,
        PolicyCommand::Test {
            file,
            catalogs,
            json,
        } => test(cli, file, catalogs.as_deref(), *json).await,
        PolicyCommand::History { json } => history(cli, *json).await,
        PolicyCommand::Rollback { target } => rollback(cli, target).await,
    }
}

/// The policy folder of the command's tenant.
fn tenant_dir(cli: &Cli, config: &warden_config::Config) -> Result<std::path::PathBuf, Failure> {
    let tenant = crate::context::tenant(cli, config)?;
    config
        .policy_dir(&tenant)
        .map(Path::to_path_buf)
        .ok_or_else(|| Failure::Failed(anyhow!("tenant `{tenant}` is not served")))
}

/// `warden policy history`.
async fn history(cli: &Cli, json: bool) -> Outcome {
    let config = config(cli)?;
    let policy_dir = tenant_dir(cli, &config)?;
    let store = store(&config).await?;
    let current = PolicySources::read_dir(&policy_dir)
        .map(|s| s.version())
        .ok();
    let bundles = store
        .bundles()
        .await
        .context("cannot read the policy history")?;
    if json {
        let list: Vec<serde_json::Value> = bundles
            .iter()
            .map(|(v, at)| json!({ "version": v, "first_seen": at, "current": current.as_deref() == Some(v.as_str()) }))
            .collect();
        return print_json(&json!({ "versions": list }));
    }
    for (v, at) in &bundles {
        let mark = if current.as_deref() == Some(v.as_str()) {
            "*"
        } else {
            " "
        };
        println!("{mark} {v}  {at}");
    }
    Ok(())
}

/// `warden policy rollback VERSION`.
async fn rollback(cli: &Cli, wanted: &str) -> Outcome {
    let config = config(cli)?;
    let policy_dir = tenant_dir(cli, &config)?;
    let store = store(&config).await?;
    if wanted.len() < 6 {
        return Err(anyhow!("give at least 6 characters of the version").into());
    }
    let matches: Vec<String> = store
        .bundles()
        .await
        .context("cannot read the policy history")?
        .into_iter()
        .map(|(v, _)| v)
        .filter(|v| v.starts_with(wanted))
        .collect();
    let [version] = matches.as_slice() else {
        return Err(anyhow!(
            "{} policy versions start with `{wanted}`; see `warden policy history`",
            matches.len()
        )
        .into());
    };
    let bundle = store
        .bundle(version)
        .await
        .context("cannot read the bundle")?
        .ok_or_else(|| anyhow!("version `{version}` is gone"))?;
    let sources = PolicySources::from_bundle(&bundle).map_err(|e| anyhow!(e))?;
    let (catalogs, _) = recorded(&config).await?;
    if let Err(d) =
        PolicyEngine::build_with(&sources, &catalogs, &warden_gateway::labels_of(&config))
    {
        let shown: Vec<String> = d.iter().map(ToString::to_string).collect();
        return Err(Failure::Invalid(anyhow!(
            "version `{version}` no longer validates against the tool catalogs, so it was not put back:\n{}",
            shown.join("\n")
        )));
    }
    sources.write_dir(&policy_dir).map_err(|e| anyhow!(e))?;
    super::audit_change(
        store.as_ref(),
        crate::context::tenant(cli, &config)?.as_str(),
        &format!("policy:{version}"),
        "policy.rollback",
    )
    .await?;
    println!(
        "policy version `{version}` is back in `{}`; a running gateway applies it within `policy.reload_interval`",
        policy_dir.display()
    );
    Ok(())
}

/// `warden policy test FILE`.
async fn test(cli: &Cli, file: &Path, catalogs_file: Option<&Path>, json: bool) -> Outcome {
    let config = config(cli)?;
    let policy_dir = tenant_dir(cli, &config)?;
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read `{}`", file.display()))?;
    let cases =
        parse_cases(&text).map_err(|e| Failure::Invalid(anyhow!("`{}`: {e}", file.display())))?;
    let catalogs = match catalogs_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read `{}`", path.display()))?;
            let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)
                .map_err(|e| Failure::Invalid(anyhow!("`{}`: {e}", path.display())))?;
            let mut catalogs = Catalogs::new();
            for (name, value) in map {
                let name = UpstreamName::new(&name).map_err(|e| Failure::Invalid(anyhow!(e)))?;
                let catalog = ToolCatalog::from_json(value)
                    .map_err(|e| Failure::Invalid(anyhow!("`{}`: {e}", path.display())))?;
                catalogs.insert(name, catalog);
            }
            catalogs
        }
        None => recorded(&config).await?.0,
    };
    let sources =
        PolicySources::read_dir(&policy_dir).map_err(|d| Failure::Invalid(anyhow!("{d}")))?;
    let engine = PolicyEngine::build_with(&sources, &catalogs, &warden_gateway::labels_of(&config))
        .map_err(|d| {
            let shown: Vec<String> = d.iter().map(ToString::to_string).collect();
            Failure::Invalid(anyhow!("invalid policies:\n{}", shown.join("\n")))
        })?;
    let results = run_cases(&engine, &cases);
    let failed = results.iter().filter(|r| !r.passed()).count();
    if json {
        let list: Vec<serde_json::Value> = results
            .iter()
            .map(|r| json!({ "name": r.name, "passed": r.passed(), "problems": r.problems, "decision": r.decision }))
            .collect();
        print_json(&json!({ "cases": list, "failed": failed }))?;
    } else {
        for r in &results {
            if r.passed() {
                println!("ok    {}", r.name);
            } else {
                println!("FAIL  {}: {}", r.name, r.problems.join("; "));
            }
        }
        println!("{} cases, {} failed", results.len(), failed);
    }
    if failed > 0 {
        return Err(anyhow!("{failed} of {} decision cases failed", results.len()).into());
    }
    Ok(())
}

/// The recorded catalogs of the configured upstreams, and the upstreams
/// that have none.
async fn recorded(config: &warden_config::Config) -> Result<(Catalogs, Vec<String>), Failure> {
    let store = store(config).await?;
    let recorded = store
        .catalogs()
        .await
        .context("cannot read the recorded catalogs")?;
    let mut catalogs = Catalogs::new();
    let mut missing = Vec::new();
    for u in &config.upstreams {
        match recorded.iter().find(|(name, _)| name == &u.name) {
            Some((_, text)) => {
                let value = serde_json::from_str(text).context("corrupt recorded catalog")?;
                catalogs.insert(
                    u.name.clone(),
                    ToolCatalog::from_json(value).map_err(|e| anyhow!(e))?,
                );
            }
            None => missing.push(u.name.to_string()),
        }
    }
    Ok((catalogs, missing))
}

/// `warden policy check`.
async fn check(cli: &Cli, live: bool, json: bool) -> Outcome {
    let config = config(cli)?;
    let policy_dir = tenant_dir(cli, &config)?;
    let mut catalogs = Catalogs::new();
    let mut missing = Vec::new();
    if live {
        let store = store(&config).await?;
        let master = if config.upstreams.iter().any(|u| u.auth.is_some()) {
            Some(Arc::new(super::secret::master_key(&config)?))
        } else {
            None
        };
        let credentials = Arc::new(Credentials::new(
            store.clone(),
            master,
            config.identity.default_tenant.clone(),
        ));
        for u in &config.upstreams {
            let upstream = Arc::new(
                Upstream::new(
                    u,
                    config.gateway.max_response_bytes,
                    Some(credentials.clone()),
                )
                .map_err(|e| anyhow!(e))?,
            );
            let result = upstream.list_tools().await;
            upstream.shutdown().await;
            let catalog = result
                .with_context(|| format!("cannot list the tools of upstream `{}`", u.name))?;
            store
                .save_catalog(&u.name, &catalog.to_json().to_string())
                .await
                .context("cannot record the catalog")?;
            catalogs.insert(u.name.clone(), catalog);
        }
    } else {
        (catalogs, missing) = recorded(&config).await?;
    }
    let sources =
        PolicySources::read_dir(&policy_dir).map_err(|d| Failure::Invalid(anyhow!("{d}")))?;
    match PolicyEngine::build_with(&sources, &catalogs, &warden_gateway::labels_of(&config)) {
        Ok(engine) => {
            // A valid folder is kept in the history, as the gateway does.
            store(&config)
                .await?
                .save_bundle(engine.version(), &sources.to_bundle())
                .await
                .context("cannot record the policy version")?;
            let tools: usize = catalogs.values().map(|c| c.tools.len()).sum();
            if json {
                return print_json(&json!({
                    "ok": true, "version": engine.version(), "policies": engine.policy_count(),
                    "tools": tools, "upstreams_without_catalog": missing,
                }));
            }
            println!(
                "ok: {} policies valid against the schema ({} tools from {} upstreams), version {}",
                engine.policy_count(),
                tools,
                catalogs.len(),
                engine.version()
            );
            if !missing.is_empty() {
                println!(
                    "note: no recorded tool catalog for {}; run `warden policy check --live` or start the gateway once",
                    missing.join(", ")
                );
            }
            Ok(())
        }
        Err(diagnostics) => {
            if json {
                let errors: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
                print_json(&json!({ "ok": false, "errors": errors }))?;
            }
            let shown: Vec<String> = diagnostics
                .iter()
                .map(|d| match d.position {
                    Some(_) => format!("{}/{d}", policy_dir.display()),
                    None => d.to_string(),
                })
                .collect();
            let mut message = format!(
                "{} policy error(s):\n{}",
                diagnostics.len(),
                shown.join("\n")
            );
            if !missing.is_empty() {
                message.push_str(&format!(
                    "\nnote: no recorded tool catalog for {}, so their tools are unknown; run `warden policy check --live` or start the gateway once",
                    missing.join(", ")
                ));
            }
            Err(Failure::Invalid(anyhow!(message)))
        }
    }
}
