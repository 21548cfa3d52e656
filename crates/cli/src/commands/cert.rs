//! `warden agent cert|certs|revoke-cert`: certificates from Warden's CA.

use std::fs;

use anyhow::{Context as _, anyhow};
use serde_json::json;
use warden_config::Config;
use warden_core::AgentState;
use warden_identity::ca::generate_agent_csr;
use warden_identity::{CaFiles, spiffe_id};
use warden_store::{CertRecord, Store, StoreError};

use super::agent::name;
use super::{audit_change, rfc3339};
use crate::cli::AgentCommand;
use crate::context::{duration, print_json};
use crate::{Failure, Outcome};

pub async fn run(
    config: &Config,
    tenant: &warden_core::TenantId,
    store: &dyn Store,
    cmd: &AgentCommand,
) -> Outcome {
    match cmd {
        AgentCommand::Cert {
            name: raw,
            csr,
            out,
            ttl,
            json,
        } => {
            let agent = name(raw)?;
            let record = store
                .agent(tenant, &agent)
                .await
                .context("cannot read the agent")?
                .ok_or_else(|| anyhow!("agent `{agent}` not found in tenant `{tenant}`"))?;
            if record.state != AgentState::Active {
                return Err(Failure::Denied(anyhow!(
                    "agent `{agent}` is {}; no certificate issued",
                    record.state
                )));
            }
            let ttl = duration("--ttl", ttl.as_deref(), config.identity.cert_ttl)?;
            if ttl > config.identity.max_cert_ttl {
                return Err(anyhow!(
                    "--ttl {ttl:?} is above `identity.max_cert_ttl` ({:?})",
                    config.identity.max_cert_ttl
                )
                .into());
            }
            let files = CaFiles::in_dir(&config.identity.ca_dir);
            if !files.exists() {
                return Err(anyhow!(
                    "no CA in `{}`: create it with `warden ca init`",
                    config.identity.ca_dir.display()
                )
                .into());
            }
            let (authority, _) = files
                .load(&config.identity.trust_domain)
                .context("cannot load the CA")?;
            let (key_pem, csr_pem) = match (csr, out) {
                (Some(path), _) => {
                    let text = fs::read_to_string(path)
                        .with_context(|| format!("cannot read `{}`", path.display()))?;
                    (None, text)
                }
                (None, Some(_)) => {
                    let id = spiffe_id(&config.identity.trust_domain, tenant, &agent);
                    let (key, csr) = generate_agent_csr(&id).map_err(|e| anyhow!(e))?;
                    (Some(key), csr)
                }
                (None, None) => return Err(anyhow!("give --csr FILE or --out DIR").into()),
            };
            let cert = authority
                .sign_agent_csr(&csr_pem, tenant, &agent, ttl)
                .map_err(|e| Failure::Denied(anyhow!(e)))?;
            store
                .record_cert(CertRecord {
                    serial: cert.serial.clone(),
                    tenant: tenant.clone(),
                    agent: agent.clone(),
                    not_before: cert.not_before,
                    not_after: cert.not_after,
                    thumbprint: cert.thumbprint.clone(),
                    revoked_at: None,
                })
                .await
                .context("cannot record the certificate")?;
            audit_change(store, tenant.as_str(), agent.as_str(), "agent.cert.issue").await?;
            let mut written = Vec::new();
            if let Some(dir) = out {
                fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create `{}`", dir.display()))?;
                let write = |file: &str, text: &str| -> anyhow::Result<std::path::PathBuf> {
                    let path = dir.join(file);
                    warden_identity::write_atomic(&path, text.as_bytes())?;
                    Ok(path)
                };
                written.push(write("cert.pem", &cert.pem)?);
                if let Some(key) = &key_pem {
                    written.push(write("key.pem", key)?);
                }
                written.push(write("ca.pem", authority.cert_pem())?);
            }
            if *json {
                return print_json(&json!({
                    "agent": agent, "serial": cert.serial, "not_after": cert.not_after,
                    "spiffe_id": spiffe_id(&config.identity.trust_domain, tenant, &agent),
                    "thumbprint": cert.thumbprint, "files": written,
                    "certificate": if out.is_none() { Some(&cert.pem) } else { None },
                }));
            }
            if out.is_some() {
                for path in &written {
                    println!("wrote {}", path.display());
                }
                println!(
                    "serial {} valid until {}",
                    cert.serial,
                    rfc3339(cert.not_after)
                );
            } else {
                print!("{}", cert.pem);
            }
            Ok(())
        }
        AgentCommand::Certs(r) => {
            let agent = name(&r.name)?;
            let certs = store
                .list_certs(tenant, &agent)
                .await
                .context("cannot list certificates")?;
            if r.json {
                return print_json(&json!({ "certificates": certs }));
            }
            println!(
                "{:<34} {:<12} {:<12} REVOKED",
                "SERIAL", "NOT BEFORE", "NOT AFTER"
            );
            for c in certs {
                println!(
                    "{:<34} {:<20} {:<20} {}",
                    c.serial,
                    rfc3339(c.not_before),
                    rfc3339(c.not_after),
                    c.revoked_at.as_deref().unwrap_or("-")
                );
            }
            Ok(())
        }
        AgentCommand::RevokeCert {
            name: raw,
            serial,
            json,
        } => {
            let agent = name(raw)?;
            let serial = serial.to_ascii_lowercase();
            let cert = match store
                .cert(&serial)
                .await
                .context("cannot read the certificate")?
            {
                Some(c) if c.agent == agent && &c.tenant == tenant => c,
                _ => {
                    return Err(anyhow!(
                        "agent `{agent}` has no certificate with serial `{serial}`"
                    )
                    .into());
                }
            };
            let cert = match store.revoke_cert(tenant, &cert.serial).await {
                Ok(c) => c,
                Err(e @ StoreError::NotFound(_)) => return Err(anyhow!(e).into()),
                Err(e) => return Err(anyhow!(e).context("cannot revoke").into()),
            };
            audit_change(store, tenant.as_str(), agent.as_str(), "agent.cert.revoke").await?;
            if *json {
                print_json(&cert)
            } else {
                println!(
                    "certificate `{}` of agent `{agent}` is revoked",
                    cert.serial
                );
                Ok(())
            }
        }
        _ => Err(anyhow!("not a certificate command").into()),
    }
}
