//! The floor: a plain pass-through proxy on the same HTTP stack as Warden
//! (axum in, reqwest out), with no checks at all.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

struct Floor {
    client: reqwest::Client,
    upstream: String,
}

async fn forward(State(floor): State<Arc<Floor>>, body: Bytes) -> Response {
    let sent = floor
        .client
        .post(&floor.upstream)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream")
        .body(body)
        .send()
        .await;
    let Ok(resp) = sent else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let status = resp.status();
    let Ok(bytes) = resp.bytes().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let mut r = (status, bytes).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Serves until the process ends.
pub async fn serve(listen: SocketAddr, upstream: String) -> anyhow::Result<()> {
    warden_gateway::install_crypto_provider();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let state = Arc::new(Floor { client, upstream });
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening {}", listener.local_addr()?);
    axum::serve(
        listener,
        Router::new().route("/mcp", post(forward)).with_state(state),
    )
    .await?;
    Ok(())
}
