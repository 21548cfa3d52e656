//! Console sign-in state, in memory: sessions (a random cookie value, kept
//! only as its SHA-256, with its own CSRF token), failed-login throttling,
//! and a bound on concurrent password hashing. A restart signs everyone
//! out, which is the safe direction.

use std::collections::HashMap;
use std::sync::Mutex;

use warden_core::{TenantId, UserName};

use super::{new_secret, secret_digest};

/// A session ends after this long without a request…
const IDLE_SECS: u64 = 30 * 60;
/// …and after this long in any case.
const ABSOLUTE_SECS: u64 = 8 * 3600;
/// Sessions held at most (only a correct password or link makes one).
const MAX_SESSIONS: usize = 10_000;
/// Failed sign-ins of one user before it is locked for a while.
const FREE_FAILURES: u32 = 5;
/// The first lock; it doubles with every further failure, up to an hour.
const LOCK_SECS: u64 = 60;
/// Users whose failures are remembered at most.
const MAX_TRACKED: usize = 10_000;

/// A signed-in user.
#[derive(Debug, Clone)]
pub(super) struct Session {
    pub(super) tenant: TenantId,
    pub(super) user: UserName,
    /// The token every form of this session must carry.
    pub(super) csrf: String,
    created: u64,
    seen: u64,
}

#[derive(Debug, Default)]
struct Failures {
    count: u32,
    locked_until: u64,
}

/// The console's sessions.
#[derive(Debug)]
pub(crate) struct ConsoleSessions {
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<String, Failures>>,
    /// Password verifications running at once (each costs ~19 MiB and tens
    /// of milliseconds: unbounded, they would be a denial of service).
    pub(super) hashing: tokio::sync::Semaphore,
}

impl Default for ConsoleSessions {
    fn default() -> Self {
        Self {
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            hashing: tokio::sync::Semaphore::new(2),
        }
    }
}

fn user_key(tenant: &TenantId, user: &str) -> String {
    format!("{tenant}/{user}")
}

impl ConsoleSessions {
    /// Starts a session; the cookie value, or none when full.
    pub(super) fn create(&self, tenant: TenantId, user: UserName, now: u64) -> Option<String> {
        let mut sessions = self.sessions.lock().ok()?;
        if sessions.len() >= MAX_SESSIONS {
            sessions.retain(|_, s| live(s, now));
            if sessions.len() >= MAX_SESSIONS {
                return None;
            }
        }
        let cookie = new_secret();
        sessions.insert(
            secret_digest(&cookie),
            Session {
                tenant,
                user,
                csrf: new_secret(),
                created: now,
                seen: now,
            },
        );
        Some(cookie)
    }

    /// The live session a cookie value names (its idle clock restarts).
    pub(super) fn get(&self, cookie: &str, now: u64) -> Option<Session> {
        let mut sessions = self.sessions.lock().ok()?;
        let key = secret_digest(cookie);
        let session = sessions.get_mut(&key)?;
        if !live(session, now) {
            sessions.remove(&key);
            return None;
        }
        session.seen = now;
        Some(session.clone())
    }

    /// Ends a session.
    pub(super) fn remove(&self, cookie: &str) {
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.remove(&secret_digest(cookie));
        }
    }

    /// Seconds until `user` may try again, when locked out.
    pub(super) fn locked(&self, tenant: &TenantId, user: &str, now: u64) -> Option<u64> {
        let Ok(failures) = self.failures.lock() else {
            // Fail closed: a broken lock refuses sign-in.
            return Some(LOCK_SECS);
        };
        let f = failures.get(&user_key(tenant, user))?;
        (f.locked_until > now).then(|| f.locked_until - now)
    }

    /// Counts a failed sign-in.
    pub(super) fn failed(&self, tenant: &TenantId, user: &str, now: u64) {
        let Ok(mut failures) = self.failures.lock() else {
            return;
        };
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, f| f.locked_until > now);
        }
        let f = failures.entry(user_key(tenant, user)).or_default();
        f.count = f.count.saturating_add(1);
        if f.count >= FREE_FAILURES {
            let doublings = (f.count - FREE_FAILURES).min(6);
            f.locked_until = now + (LOCK_SECS << doublings).min(3600);
        }
    }

    /// Clears the failures of a user who signed in.
    pub(super) fn succeeded(&self, tenant: &TenantId, user: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(&user_key(tenant, user));
        }
    }
}

fn live(s: &Session, now: u64) -> bool {
    now < s.seen.saturating_add(IDLE_SECS) && now < s.created.saturating_add(ABSOLUTE_SECS)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    fn acme() -> TenantId {
        TenantId::new("acme").unwrap()
    }

    #[test]
    fn sessions_expire_when_idle_and_in_any_case() {
        let s = ConsoleSessions::default();
        let cookie = s
            .create(acme(), UserName::new("bob").unwrap(), 1_000)
            .unwrap();
        assert_eq!(s.get(&cookie, 1_001).unwrap().user.as_str(), "bob");
        assert!(s.get("another", 1_001).is_none());
        // Kept alive by use, until the absolute limit.
        let mut t = 1_000;
        while t + IDLE_SECS - 1 < 1_000 + ABSOLUTE_SECS {
            t += IDLE_SECS - 1;
            assert!(s.get(&cookie, t).is_some(), "at {t}");
        }
        assert!(s.get(&cookie, 1_000 + ABSOLUTE_SECS).is_none());
        let idle = s
            .create(acme(), UserName::new("bob").unwrap(), 1_000)
            .unwrap();
        assert!(s.get(&idle, 1_000 + IDLE_SECS).is_none());
        let gone = s
            .create(acme(), UserName::new("bob").unwrap(), 1_000)
            .unwrap();
        s.remove(&gone);
        assert!(s.get(&gone, 1_001).is_none());
    }

    #[test]
    fn repeated_failures_lock_the_user_for_growing_times() {
        let s = ConsoleSessions::default();
        for _ in 0..FREE_FAILURES - 1 {
            s.failed(&acme(), "bob", 100);
        }
        assert_eq!(s.locked(&acme(), "bob", 100), None);
        s.failed(&acme(), "bob", 100);
        assert_eq!(s.locked(&acme(), "bob", 100), Some(LOCK_SECS));
        // Another tenant's bob is not locked.
        assert_eq!(s.locked(&TenantId::new("b").unwrap(), "bob", 100), None);
        s.failed(&acme(), "bob", 200);
        assert_eq!(s.locked(&acme(), "bob", 200), Some(2 * LOCK_SECS));
        s.succeeded(&acme(), "bob");
        assert_eq!(s.locked(&acme(), "bob", 200), None);
    }
}
