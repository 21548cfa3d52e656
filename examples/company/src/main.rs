//! `warden-example-mcp [--service docs|crm|hr|mail] [--http ADDR]`: one of
//! the example company's MCP servers, on stdio (default) or Streamable HTTP.
//!
//! `warden-example-mcp demo URL TOKEN`: an agent (the official SDK's client)
//! that lists its tools through Warden and makes allowed and denied calls.

use std::net::SocketAddr;

use warden_example::{Service, serve_http, serve_stdio};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("demo") {
        let (Some(url), Some(token)) = (argv.get(2), argv.get(3)) else {
            anyhow::bail!("usage: warden-example-mcp demo URL TOKEN");
        };
        let report = warden_example::demo(url, token).await?;
        println!("tools the agent is shown: {}", report.tools.join(", "));
        for (what, result, allowed) in report.calls {
            let mark = if allowed { "ALLOWED" } else { "DENIED " };
            println!(
                "  {mark} {what}\n          -> {}",
                result.replace('\n', " ")
            );
        }
        return Ok(());
    }
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
                println!(
                    "usage: warden-example-mcp [--service docs|crm|hr|mail] [--http ADDR]\n       warden-example-mcp demo URL TOKEN"
                );
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
