//! TLS on the gateway listener, with client certificates (mTLS).
//!
//! Handshakes run in their own tasks (a client that never finishes its
//! handshake holds up nobody) and finished connections are handed to axum
//! through [`TlsListener`], an [`axum::serve::Listener`]. Each connection
//! carries a [`Peer`]: its address and, when the client presented a
//! certificate that chains to Warden's CA, the agent identity it names. The
//! server configuration can be replaced while serving (CA rotation).

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use rustls::RootCertStore;
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use warden_config::ClientAuth;
use warden_identity::{CertIdentity, ca};

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at most.
const MAX_HANDSHAKES: usize = 1024;

/// Who is at the other end of a connection.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The remote address.
    pub addr: SocketAddr,
    /// The client certificate's identity, if one was presented: the chain
    /// was verified in the handshake; the identity may still be unusable
    /// (wrong trust domain, no SPIFFE id), which is an error here.
    pub cert: Option<Arc<Result<CertIdentity, String>>>,
}

impl Peer {
    /// The remote address as text, as `SocketAddr` displays it: an IPv4
    /// address is written without the formatting machinery (once per
    /// request, for its audit record).
    pub fn source(&self) -> String {
        let SocketAddr::V4(v4) = self.addr else {
            return self.addr.to_string();
        };
        let mut out = String::with_capacity(21);
        for (i, octet) in v4.ip().octets().into_iter().enumerate() {
            if i > 0 {
                out.push('.');
            }
            push_decimal(&mut out, u32::from(octet));
        }
        out.push(':');
        push_decimal(&mut out, u32::from(v4.port()));
        out
    }
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut String, n: u32) {
    if n >= 10 {
        push_decimal(out, n / 10);
    }
    out.push(char::from_digit(n % 10, 10).unwrap_or('0'));
}

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        Self {
            addr: *stream.remote_addr(),
            cert: None,
        }
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// Where a refused handshake is reported (to be audited).
pub type OnRefused = Arc<dyn Fn(SocketAddr, String) + Send + Sync>;

/// A listener that yields TLS connections whose handshake has finished.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, Peer)>,
    local: SocketAddr,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl TlsListener {
    /// Accepts on `tcp` with the configuration in `config` (read anew for
    /// each connection), reading identities in `trust_domain`.
    pub fn spawn(
        tcp: TcpListener,
        config: Arc<RwLock<Arc<ServerConfig>>>,
        trust_domain: String,
        on_refused: OnRefused,
    ) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(256);
        let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let (stream, addr) = match tcp.accept().await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let _ = stream.set_nodelay(true);
                let current = match config.read() {
                    Ok(c) => c.clone(),
                    Err(poisoned) => poisoned.into_inner().clone(),
                };
                let (tx, td, on_refused) = (tx.clone(), trust_domain.clone(), on_refused.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    let acceptor = TlsAcceptor::from(current);
                    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            return on_refused(addr, format!("TLS handshake failed: {e}"));
                        }
                        Err(_) => return on_refused(addr, "TLS handshake timed out".into()),
                    };
                    let cert = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|der| {
                            Arc::new(
                                ca::cert_identity(der.as_ref(), &td).map_err(|e| e.to_string()),
                            )
                        });
                    let _ = tx.send((tls, Peer { addr, cert })).await;
                });
            }
        });
        Ok(Self { ready, local })
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(next) => next,
            // The accept task ended: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Peer {
            addr: self.local,
            cert: None,
        })
    }
}

/// The server configuration: `chain_pem` and `key_pem` as the server's
/// certificate, client certificates verified against `bundle_pem`.
pub fn server_config(
    chain_pem: &str,
    key_pem: &str,
    bundle_pem: &str,
    client_auth: ClientAuth,
) -> Result<ServerConfig, String> {
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("server certificate: {e}"))?;
    if chain.is_empty() {
        return Err("server certificate: no certificate in the PEM".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("server key: {e}"))?;
    let mut roots = RootCertStore::empty();
    for ca in ca::parse_cert_bundle(bundle_pem).map_err(|e| e.to_string())? {
        roots.add(ca).map_err(|e| format!("trust bundle: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    let verifier = match client_auth {
        ClientAuth::Required => verifier,
        ClientAuth::Optional => verifier.allow_unauthenticated(),
    }
    .build()
    .map_err(|e| format!("client verifier: {e}"))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| format!("server certificate: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // No session resumption: a resumed session would carry the client
    // certificate of the first handshake, so a renewed certificate would go
    // unseen and an expired one unverified. Every connection is verified.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    #[test]
    fn a_peer_reads_as_its_address_displays() {
        let mut addrs: Vec<SocketAddr> = [
            "0.0.0.0:0",
            "127.0.0.1:42098",
            "255.255.255.255:65535",
            "10.0.9.100:8080",
            "1.20.255.3:1",
            "[::1]:443",
            "[2001:db8::8a2e:370:7334]:65535",
            "[::ffff:192.0.2.1]:80",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        for i in 0..=255u8 {
            let port = u16::from(i) * 257;
            addrs.push(SocketAddr::from(([i, 255 - i, i / 10, 9], port)));
        }
        for addr in addrs {
            let peer = Peer { addr, cert: None };
            assert_eq!(peer.source(), addr.to_string());
        }
    }
}
