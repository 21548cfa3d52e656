//! MCP sessions between agents and Warden. A session id is bound to the
//! agent that opened it: another agent presenting it is refused. Sessions
//! live in memory with an idle limit; a client whose session is gone gets
//! HTTP 404 and initialises again, as the MCP specification says.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::auth::Principal;

/// Sessions idle longer than this are forgotten.
const IDLE: Duration = Duration::from_secs(3600);
/// At most this many sessions; the oldest idle ones go first.
const MAX_SESSIONS: usize = 100_000;

#[derive(Debug)]
struct Session {
    principal: Principal,
    last_seen: Instant,
}

/// The live sessions.
#[derive(Debug, Default)]
pub struct Sessions {
    inner: Mutex<HashMap<String, Session>>,
}

/// What a presented session id is worth.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionCheck {
    /// No id presented (stateless client).
    Absent,
    /// A live session of this principal.
    Valid,
    /// Unknown, expired, or another principal's.
    Unknown,
}

impl Sessions {
    /// Opens a session for `principal`; returns its id.
    pub fn open(&self, principal: &Principal) -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        if let Ok(mut map) = self.inner.lock() {
            if map.len() >= MAX_SESSIONS {
                let now = Instant::now();
                map.retain(|_, s| now.duration_since(s.last_seen) < IDLE);
                if map.len() >= MAX_SESSIONS
                    && let Some(oldest) = map
                        .iter()
                        .min_by_key(|(_, s)| s.last_seen)
                        .map(|(k, _)| k.clone())
                {
                    map.remove(&oldest);
                }
            }
            map.insert(
                id.clone(),
                Session {
                    principal: principal.clone(),
                    last_seen: Instant::now(),
                },
            );
        }
        id
    }

    /// Checks a presented id against `principal`, refreshing it.
    pub fn check(&self, id: Option<&str>, principal: &Principal) -> SessionCheck {
        let Some(id) = id else {
            return SessionCheck::Absent;
        };
        let Ok(mut map) = self.inner.lock() else {
            return SessionCheck::Unknown;
        };
        match map.get_mut(id) {
            Some(s)
                if s.principal.tenant == principal.tenant
                    && s.principal.agent == principal.agent =>
            {
                if s.last_seen.elapsed() > IDLE {
                    map.remove(id);
                    return SessionCheck::Unknown;
                }
                s.last_seen = Instant::now();
                SessionCheck::Valid
            }
            _ => SessionCheck::Unknown,
        }
    }

    /// Ends a session of `principal`; false if there was none.
    pub fn close(&self, id: &str, principal: &Principal) -> bool {
        if self.check(Some(id), principal) != SessionCheck::Valid {
            return false;
        }
        self.inner
            .lock()
            .map(|mut m| m.remove(id).is_some())
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use warden_core::{AgentName, TenantId};

    use super::*;

    fn p(agent: &str) -> Principal {
        Principal {
            tenant: TenantId::new("t").unwrap(),
            agent: AgentName::new(agent).unwrap(),
            user: None,
            mtls: false,
            info: warden_policy::AgentInfo::default(),
            task: None,
        }
    }

    #[test]
    fn sessions_are_bound_to_their_agent() {
        let s = Sessions::default();
        let id = s.open(&p("a"));
        assert_eq!(s.check(Some(&id), &p("a")), SessionCheck::Valid);
        assert_eq!(s.check(Some(&id), &p("b")), SessionCheck::Unknown);
        assert_eq!(s.check(Some("nope"), &p("a")), SessionCheck::Unknown);
        assert_eq!(s.check(None, &p("a")), SessionCheck::Absent);
        assert!(!s.close(&id, &p("b")));
        assert!(s.close(&id, &p("a")));
        assert_eq!(s.check(Some(&id), &p("a")), SessionCheck::Unknown);
    }
}
