//! What commands share: logging, the config, the store, the signing key.

use std::sync::Arc;

use anyhow::Context as _;
use tracing_subscriber::EnvFilter;
use warden_config::Config;
use warden_identity::{KeyRing, TokenIssuer};
use warden_store::Store;

use crate::Failure;
use crate::cli::{Cli, Command, LogFormat};

/// Logs to stderr (filtered by `WARDEN_LOG`), and, with a tracer
/// provider, the gateway's spans to OpenTelemetry (whatever the log level).
pub fn init_logging(cli: &Cli, traces: Option<&opentelemetry_sdk::trace::SdkTracerProvider>) {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let default = if matches!(cli.command, Command::Serve) {
        "info"
    } else {
        "warn"
    };
    let filter = EnvFilter::try_from_env("WARDEN_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    let logs = match cli.log_format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
    }
    .with_filter(filter);
    let spans = traces.map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("warden"))
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target("warden_gateway", tracing::Level::INFO),
            )
    });
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init();
}

/// Loads the config; any problem is an invalid-config failure (exit 3).
pub fn config(cli: &Cli) -> Result<Config, Failure> {
    Config::load(&cli.config).map_err(|e| {
        let mut e = anyhow::Error::new(e);
        if !cli.config.exists() {
            e = e.context("no config file (create one with `warden init DIR`, or pass --config)");
        }
        Failure::Invalid(e)
    })
}

pub async fn store(config: &Config) -> Result<Arc<dyn Store>, Failure> {
    Ok(warden_store::open(&config.storage_url)
        .await
        .context("cannot open the store")?)
}

pub fn key_ring(config: &Config) -> Result<Arc<KeyRing>, Failure> {
    let path = &config.identity.signing_key;
    let ring = KeyRing::load(path)
        .with_context(|| format!("the signing key `{}`", path.display()))
        .map_err(Failure::Invalid)?;
    Ok(Arc::new(ring))
}

pub fn issuer(config: &Config) -> Result<TokenIssuer, Failure> {
    let id = &config.identity;
    Ok(TokenIssuer::new(
        key_ring(config)?,
        &id.issuer,
        &id.audience,
        &id.trust_domain,
        id.max_token_ttl,
    ))
}

/// A duration given on the command line, or `default`.
pub fn duration(
    flag: &str,
    value: Option<&str>,
    default: std::time::Duration,
) -> Result<std::time::Duration, Failure> {
    match value {
        Some(t) => humantime::parse_duration(t)
            .map_err(|e| Failure::Failed(anyhow::anyhow!("invalid {flag} `{t}`: {e}"))),
        None => Ok(default),
    }
}

/// Who runs the command, for admin audit records.
pub fn operator() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .map_or_else(|| "cli".to_owned(), |u| format!("cli:{u}"))
}

pub fn print_json(value: &impl serde::Serialize) -> Result<(), Failure> {
    println!(
        "{}",
        serde_json::to_string_pretty(value).context("cannot print JSON")?
    );
    Ok(())
}

/// The tenant a command acts in: `--tenant`, else the default one; it must
/// be one the config serves.
pub fn tenant(cli: &Cli, config: &Config) -> Result<warden_core::TenantId, Failure> {
    let Some(raw) = &cli.tenant else {
        return Ok(config.identity.default_tenant.clone());
    };
    let tenant =
        warden_core::TenantId::new(raw).map_err(|e| Failure::Failed(anyhow::anyhow!(e)))?;
    if config.policy_dir(&tenant).is_none() {
        return Err(Failure::Failed(anyhow::anyhow!(
            "tenant `{tenant}` is not served: add it under `[[tenants]]` in the config"
        )));
    }
    Ok(tenant)
}
