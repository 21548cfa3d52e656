//! Approval events for the people who decide: every transition of an
//! approval (created, reviewed, decided, executed) becomes an event in the
//! store's outbox, in the same place as the change, for each webhook that
//! wants it; a delivery task POSTs them, HMAC-signed, and retries with
//! backoff. An event that still fails after the last attempt is kept in the
//! outbox with its error, logged, and becomes an audit record: nothing is
//! dropped silently. Delivery is at least once: receivers deduplicate by
//! `Warden-Webhook-Id`.
//!
//! The signature is `Warden-Signature: v1=<hex HMAC-SHA256>` over
//! `<id>.<timestamp>.<body>` with the webhook's secret; receivers should
//! refuse timestamps more than a few minutes old. Events name the call
//! (agent, user, target, side effects, the SHA-256 of the arguments) and
//! link to the console; the arguments themselves stay in Warden.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use warden_approval::{Approval, State};
use warden_audit::AuditRecord;
use warden_config::{Config, SecretSource, WebhookConfig};
use warden_core::Effect;
use warden_store::{OutboxEvent, OutboxItem, Store};

use crate::audit_log::AuditLog;

/// The longest wait between attempts.
const MAX_BACKOFF_SECS: u64 = 300;
/// How long one delivery may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// The shortest webhook secret accepted.
const MIN_SECRET_BYTES: usize = 16;

/// The event an approval's current state makes, after a transition.
pub fn event_kind(a: &Approval) -> &'static str {
    match a.state {
        State::Pending if a.reviews.is_empty() => "approval.created",
        State::Pending => "approval.reviewed",
        State::Executed => "approval.executed",
        State::Approved | State::Denied | State::Expired | State::Cancelled => "approval.decided",
    }
}

/// The JSON body of event `kind` about `a`.
pub fn event_body(kind: &str, a: &Approval, console_url: &str, now: u64) -> Value {
    let r = &a.request;
    json!({
        "id": uuid::Uuid::now_v7().to_string(),
        "type": kind,
        "time": now,
        "tenant": r.tenant,
        "approval": {
            "id": a.id,
            "state": a.state,
            "agent": r.agent,
            "user": r.user,
            "task": r.task,
            "upstream": r.upstream,
            "tool": r.tool,
            "side_effects": r.side_effects,
            "arguments_sha256": r.arguments_sha256,
            "reasons": r.reasons,
            "approvers_needed": a.needed(),
            "groups": a.groups,
            "reviews": a.reviews,
            "created_at": a.created_at,
            "expires_at": a.expires_at,
        },
        "console_url": format!("{console_url}/console/approvals/{}", a.id),
    })
}

/// Queues the event of `a`'s latest transition for every webhook that
/// wants it.
pub async fn enqueue(store: &dyn Store, config: &Config, a: &Approval, now: u64) {
    let kind = event_kind(a);
    let events: Vec<OutboxEvent> = config
        .webhooks
        .iter()
        .filter(|w| w.wants(kind, &a.request.tenant))
        .map(|w| OutboxEvent {
            target: w.name.clone(),
            tenant: warden_core::TenantId::new(a.request.tenant.as_str())
                .unwrap_or_else(|_| config.identity.default_tenant.clone()),
            body: event_body(kind, a, &config.admin.public_url, now).to_string(),
        })
        .collect();
    if events.is_empty() {
        return;
    }
    if let Err(e) = store.enqueue_events(&events, now).await {
        tracing::error!(approval = %a.id, "approval event not queued for webhooks: {e}");
    }
}

/// The HMAC signature of a delivery.
pub fn signature(secret: &[u8], id: &str, timestamp: u64, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1={}", hex::encode(tag.as_ref()))
}

/// A webhook ready to send to.
struct Hook {
    config: WebhookConfig,
    secret: Vec<u8>,
}

fn read_secret(w: &WebhookConfig) -> Result<Vec<u8>, String> {
    let text = match &w.secret {
        SecretSource::File(p) => std::fs::read_to_string(p).map_err(|e| {
            format!(
                "webhook `{}`: cannot read the secret `{}`: {e}",
                w.name,
                p.display()
            )
        })?,
        SecretSource::Env(v) => {
            std::env::var(v).map_err(|_| format!("webhook `{}`: `{v}` is not set", w.name))?
        }
    };
    let secret = text.trim().as_bytes().to_vec();
    if secret.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "webhook `{}`: the secret needs at least {MIN_SECRET_BYTES} bytes",
            w.name
        ));
    }
    Ok(secret)
}

/// Delivers the outbox to the configured webhooks.
pub(crate) struct Deliveries {
    hooks: Vec<Hook>,
    http: reqwest::Client,
    store: Arc<dyn Store>,
    audit: AuditLog,
    wake: tokio::sync::Notify,
}

impl std::fmt::Debug for Deliveries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliveries")
            .field("hooks", &self.hooks.len())
            .finish_non_exhaustive()
    }
}

impl Deliveries {
    /// Reads the webhooks' secrets (a missing one stops the start) and
    /// starts delivering, if there are webhooks.
    pub(crate) fn start(
        config: &Config,
        store: Arc<dyn Store>,
        audit: AuditLog,
    ) -> Result<Option<Arc<Self>>, String> {
        if config.webhooks.is_empty() {
            return Ok(None);
        }
        let hooks = config
            .webhooks
            .iter()
            .map(|w| {
                Ok(Hook {
                    config: w.clone(),
                    secret: read_secret(w)?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(DELIVERY_TIMEOUT)
            .build()
            .map_err(|e| format!("webhook client: {e}"))?;
        let me = Arc::new(Self {
            hooks,
            http,
            store,
            audit,
            wake: tokio::sync::Notify::new(),
        });
        let weak = Arc::downgrade(&me);
        tokio::spawn(async move {
            loop {
                let Some(me) = weak.upgrade() else { return };
                me.deliver_due().await;
                let wait = tokio::time::sleep(Duration::from_secs(1));
                tokio::select! {
                    () = me.wake.notified() => {}
                    () = wait => {}
                }
            }
        });
        Ok(Some(me))
    }

    /// Delivers soon (something was queued).
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    async fn deliver_due(&self) {
        let now = crate::auth::now_secs();
        let due = match self.store.due_events(now, 64).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!("webhook outbox unavailable: {e}");
                return;
            }
        };
        let sends = due.into_iter().map(|item| self.deliver(item));
        futures_util::future::join_all(sends).await;
    }

    async fn deliver(&self, item: OutboxItem) {
        let now = crate::auth::now_secs();
        let hook = self.hooks.iter().find(|h| h.config.name == item.target);
        let result = match hook {
            Some(hook) => self.send(hook, &item, now).await,
            None => Err(format!("webhook `{}` is no longer configured", item.target)),
        };
        let max_attempts = hook.map_or(1, |h| h.config.max_attempts);
        let stored = match result {
            Ok(()) => self.store.event_delivered(item.seq, now).await,
            Err(e) if item.attempts + 1 >= max_attempts => {
                tracing::error!(webhook = %item.target, "approval event not delivered, given up: {e}");
                self.record_failure(&item, &e, max_attempts).await;
                self.store.event_failed(item.seq, now, &e).await
            }
            Err(e) => {
                let backoff = (1u64 << item.attempts.min(16)).min(MAX_BACKOFF_SECS);
                tracing::warn!(webhook = %item.target, "approval event not delivered, retrying in {backoff} s: {e}");
                self.store.event_retry(item.seq, now + backoff, &e).await
            }
        };
        if let Err(e) = stored {
            tracing::error!("webhook outbox not updated: {e}");
        }
    }

    async fn send(&self, hook: &Hook, item: &OutboxItem, now: u64) -> Result<(), String> {
        let id = serde_json::from_str::<Value>(&item.body)
            .ok()
            .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| format!("outbox-{}", item.seq));
        let response = self
            .http
            .post(&hook.config.url)
            .header("content-type", "application/json")
            .header("warden-webhook-id", &id)
            .header("warden-webhook-timestamp", now.to_string())
            .header(
                "warden-signature",
                signature(&hook.secret, &id, now, &item.body),
            )
            .body(item.body.clone())
            .send()
            .await
            .map_err(|e| format!("delivery failed: {e}"))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("the receiver answered {}", response.status()))
        }
    }

    async fn record_failure(&self, item: &OutboxItem, error: &str, attempts: u32) {
        let mut rec = AuditRecord::admin(
            crate::mcp::exchange_now(),
            item.tenant.as_str(),
            "warden",
            None,
            &format!("webhook:{}", item.target),
            "webhook.failed",
        );
        rec.decision.effect = Effect::Deny;
        rec.decision.reasons = vec![format!(
            "event {} not delivered after {attempts} attempts: {error}",
            item.seq
        )];
        if let Err(e) = self.audit.write(&rec).await {
            tracing::error!("webhook failure not audited: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_id_time_and_body() {
        let s = signature(b"0123456789abcdef", "e1", 100, "{}");
        assert!(s.starts_with("v1=") && s.len() == 3 + 64, "{s}");
        assert_ne!(s, signature(b"0123456789abcdef", "e2", 100, "{}"));
        assert_ne!(s, signature(b"0123456789abcdef", "e1", 101, "{}"));
        assert_ne!(s, signature(b"0123456789abcdef", "e1", 100, "{ }"));
        assert_ne!(s, signature(b"0123456789abcdeF", "e1", 100, "{}"));
    }
}
