//! `warden serve`.

use anyhow::{Context as _, anyhow};
use tokio::net::TcpListener;
use warden_gateway::{Gateway, StartError};

use crate::cli::Cli;
use crate::context::{config, store};
use crate::{Failure, Outcome};

pub async fn run(cli: &Cli) -> Outcome {
    let config = config(cli)?;
    let traces = crate::telemetry::provider(&config.telemetry).map_err(Failure::Invalid)?;
    crate::context::init_logging(cli, traces.as_ref());
    let batch = warden_gateway::sched::is_batch_scheduled();
    if config.gateway.batch_scheduling && !batch {
        tracing::warn!("gateway.batch_scheduling is on but SCHED_BATCH is not in effect");
    }
    tracing::debug!(batch_scheduling = batch, "thread scheduling");
    let served = serve(cli, config).await;
    if let Some(p) = traces {
        // Flushes the spans still batched.
        match tokio::task::spawn_blocking(move || p.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("traces not flushed: {e}"),
            Err(e) => tracing::warn!("traces not flushed: {e}"),
        }
    }
    served
}

async fn serve(_cli: &Cli, config: warden_config::Config) -> Outcome {
    let store = store(&config).await?;
    let gateway_addr = config.gateway.listen;
    let admin_addr = config.admin.listen;
    let gateway = Gateway::start(config, store).await.map_err(|e| match e {
        StartError::Policy(_) => Failure::Invalid(anyhow!(e)),
        StartError::Other(m) => Failure::Failed(anyhow!(m)),
    })?;
    let gateway_listener = TcpListener::bind(gateway_addr)
        .await
        .with_context(|| format!("cannot listen on {gateway_addr}"))?;
    let admin_listener = TcpListener::bind(admin_addr)
        .await
        .with_context(|| format!("cannot listen on {admin_addr}"))?;
    let gateway_addr = gateway_listener.local_addr().unwrap_or(gateway_addr);
    let admin_addr = admin_listener.local_addr().unwrap_or(admin_addr);
    let engine = gateway.policy().engine();
    tracing::info!(
        gateway = %gateway_addr,
        admin = %admin_addr,
        policies = engine.as_ref().map_or(0, |e| e.policy_count()),
        policy_version = engine.as_ref().map_or("-", |e| e.version()),
        "warden is serving"
    );
    let scheme = if gateway.config().gateway.tls.is_some() {
        "https"
    } else {
        "http"
    };
    println!(
        "warden: gateway on {scheme}://{gateway_addr}/mcp (federated) and {scheme}://{gateway_addr}/mcp/{{upstream}}; admin API on http://{admin_addr}"
    );
    for u in &gateway.config().upstreams {
        println!(
            "warden: upstream `{}` at {scheme}://{gateway_addr}/mcp/{}",
            u.name, u.name
        );
    }
    warden_gateway::serve(gateway, gateway_listener, admin_listener, shutdown_signal())
        .await
        .context("server error")?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
