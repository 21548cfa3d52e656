//! Phase 3, score context: what each agent session has already read (its
//! taint: the most sensitive classification of the tools it called) and how
//! many calls it made. Policies see it as `context.session`, so a session
//! that read confidential data can be kept from sending anything out.
//!
//! A session is the MCP session (`Mcp-Session-Id`) when the client keeps
//! one; a client without a session is tracked per identity (tenant, agent,
//! user, task), so dropping the session header never clears the taint.
//! Taint lives in memory and is forgotten after an hour of inactivity.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use warden_policy::{SessionState, ToolEffect, ToolLabel};

use crate::auth::Principal;

/// Sessions idle longer than this are forgotten.
const IDLE: Duration = Duration::from_secs(3600);
/// At most this many tracked sessions; the idle ones go first.
const MAX_TRACKED: usize = 200_000;

/// The taint of every live session.
#[derive(Debug, Default)]
pub struct Taints {
    inner: Mutex<HashMap<String, (SessionState, Instant)>>,
}

/// The key of a request's session: its MCP session, else its identity.
pub fn session_key(session: Option<&str>, who: &Principal) -> String {
    match session {
        Some(id) => ["s:", id].concat(),
        None => [
            "p:",
            who.tenant.as_str(),
            "/",
            who.agent.as_str(),
            "/",
            who.user.as_ref().map_or("-", |u| u.as_str()),
            "/",
            who.task.as_ref().map_or("-", |t| t.id.as_str()),
        ]
        .concat(),
    }
}

impl Taints {
    /// The session's state so far.
    pub fn state(&self, key: &str) -> SessionState {
        self.inner
            .lock()
            .ok()
            .and_then(|m| {
                m.get(key)
                    .filter(|(_, seen)| seen.elapsed() < IDLE)
                    .map(|(s, _)| *s)
            })
            .unwrap_or_default()
    }

    /// Records a completed call of a tool labelled `label`.
    pub fn record(&self, key: &str, label: ToolLabel) {
        let Ok(mut map) = self.inner.lock() else {
            return;
        };
        if map.len() >= MAX_TRACKED && !map.contains_key(key) {
            map.retain(|_, (_, seen)| seen.elapsed() < IDLE);
        }
        let (state, seen) = map
            .entry(key.to_owned())
            .or_insert_with(|| (SessionState::default(), Instant::now()));
        if seen.elapsed() >= IDLE {
            *state = SessionState::default();
        }
        state.taint = state.taint.max(label.classification);
        state.calls = state.calls.saturating_add(1);
        if label.effect == ToolEffect::ReadOnly {
            state.reads = state.reads.saturating_add(1);
        }
        *seen = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use warden_policy::Classification;

    use super::*;

    #[test]
    fn taint_only_rises_and_counts_calls() {
        let t = Taints::default();
        let read = |c| ToolLabel {
            effect: ToolEffect::ReadOnly,
            classification: c,
            external: false,
        };
        assert_eq!(t.state("k"), SessionState::default());
        t.record("k", read(Classification::Confidential));
        t.record("k", read(Classification::Public));
        t.record(
            "k",
            ToolLabel {
                effect: ToolEffect::Persistent,
                classification: Classification::Internal,
                external: true,
            },
        );
        let s = t.state("k");
        assert_eq!(s.taint, Classification::Confidential);
        assert_eq!((s.reads, s.calls), (2, 3));
        assert_eq!(t.state("other"), SessionState::default());
    }
}
