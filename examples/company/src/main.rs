//! `warden-example-mcp [--service docs|crm|hr|mail] [--http ADDR]`: one of
//! the example company's MCP servers, on stdio (default) or Streamable HTTP.
//!
//! `warden-example-mcp demo URL [TOKEN] [--ca FILE] [--cert FILE --key FILE]`:
//! an agent (the official SDK's client) that lists its tools through Warden
//! and makes allowed and denied calls, with a bearer token, or with its
//! certificate (mTLS: it gets a certificate-bound token first).
//!
//! `warden-example-mcp call URL TOKEN [--ca FILE] TOOL JSON`: one call, in a
//! session of its own (exit code 3 when it is held or refused).

use std::net::SocketAddr;

use warden_example::{DemoAuth, Service, serve_http, serve_stdio};

const USAGE: &str = "usage: warden-example-mcp [--service docs|crm|hr|mail] [--http ADDR]\n       warden-example-mcp demo URL [TOKEN] [--ca FILE] [--cert FILE --key FILE]\n       warden-example-mcp call URL TOKEN [--ca FILE] TOOL JSON";

fn demo_auth(args: &[String]) -> anyhow::Result<DemoAuth> {
    let mut token = None;
    let (mut ca, mut cert, mut key) = (None, None, None);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut file = || -> anyhow::Result<String> {
            let path = it
                .next()
                .ok_or_else(|| anyhow::anyhow!("{arg} needs a file"))?;
            Ok(std::fs::read_to_string(path)?)
        };
        match arg.as_str() {
            "--ca" => ca = Some(file()?),
            "--cert" => cert = Some(file()?),
            "--key" => key = Some(file()?),
            other if token.is_none() && !other.starts_with("--") => token = Some(other.to_owned()),
            other => anyhow::bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    match (token, ca, cert, key) {
        (Some(token), ca, None, None) => Ok(DemoAuth::Token { token, ca }),
        (None, Some(ca), Some(cert), Some(key)) => Ok(DemoAuth::Certificate { ca, cert, key }),
        _ => anyhow::bail!("{USAGE}"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("demo") {
        let Some(url) = argv.get(2) else {
            anyhow::bail!("{USAGE}");
        };
        let auth = demo_auth(argv.get(3..).unwrap_or_default())?;
        let report = warden_example::demo(url, &auth).await?;
        println!("tools the agent is shown: {}", report.tools.join(", "));
        for (what, result, _) in report.calls {
            let (mark, what) = what.split_once(' ').unwrap_or(("", &what));
            println!(
                "  {mark:<7} {what}\n          -> {}",
                result.replace('\n', " ")
            );
        }
        return Ok(());
    }
    if argv.get(1).map(String::as_str) == Some("call") {
        // call URL TOKEN [--ca FILE] TOOL JSON
        let (Some(url), Some(tool), Some(json)) = (
            argv.get(2),
            argv.get(argv.len().saturating_sub(2)),
            argv.last(),
        ) else {
            anyhow::bail!("{USAGE}");
        };
        let auth = demo_auth(
            argv.get(3..argv.len().saturating_sub(2))
                .unwrap_or_default(),
        )?;
        let args: serde_json::Value = serde_json::from_str(json)?;
        let outcome = warden_example::call(url, &auth, tool, args).await?;
        let (mark, text) = outcome.describe();
        println!(
            "  {mark} {tool} {json}\n          -> {}",
            text.replace('\n', " ")
        );
        if !matches!(outcome, warden_example::CallOutcome::Ran(_)) {
            std::process::exit(3);
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
                println!("{USAGE}");
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
