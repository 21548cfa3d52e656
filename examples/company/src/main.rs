//! `warden-example-mcp [--service docs|crm|hr|mail] [--http ADDR]`: one of
//! the example company's MCP servers, on stdio (default) or Streamable HTTP.

use std::net::SocketAddr;

use warden_example::{Service, serve_http, serve_stdio};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut service = Service::Docs;
    let mut http: Option<SocketAddr> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--service" => {
                service = args
                    .next()
                    .unwrap_or_default()
                    .parse()
                    .map_err(anyhow::Error::msg)?
            }
            "--http" => http = Some(args.next().unwrap_or_default().parse()?),
            "-h" | "--help" => {
                println!("usage: warden-example-mcp [--service docs|crm|hr|mail] [--http ADDR]");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument `{other}`"),
        }
    }
    match http {
        None => serve_stdio(service).await,
        Some(addr) => {
            let server = serve_http(service, addr).await?;
            eprintln!("warden-example-mcp: {service:?} on {}", server.url());
            tokio::signal::ctrl_c().await?;
            Ok(())
        }
    }
}
