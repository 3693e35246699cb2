//! Dashboard sessions: an API key exchanged for a random token held in an `HttpOnly`,
//! `SameSite=Strict` cookie, with a separate CSRF token every request must echo.
//!
//! The key's plaintext stays in this process's memory (an [`ApiKeySecret`]); the browser holds
//! only the session token. Sessions end on sign-out, after [`SessionConfig::idle_timeout`]
//! without use, or [`SessionConfig::absolute_timeout`] after sign-in, whichever comes first;
//! a server restart ends them all.
//!
//! ```
//! use std::time::Duration;
//! use keyward_server::dashboard::{SessionConfig, Sessions};
//!
//! let sessions = Sessions::new(SessionConfig { idle_timeout: Duration::from_secs(600), ..SessionConfig::default() });
//! assert_eq!(sessions.len(), 0);
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyward_core::ApiKeySecret;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "kw_session";
/// Header carrying the session's CSRF token.
pub const CSRF_HEADER: &str = "x-keyward-csrf";

/// How long sessions live and how many there may be.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Most sessions held at once; signing in beyond it ends the least recently used one.
    pub max_sessions: usize,
    /// A session unused this long ends (30 minutes by default).
    pub idle_timeout: Duration,
    /// A session ends this long after sign-in however it is used (8 hours by default).
    pub absolute_timeout: Duration,
    /// Marks the cookie `Secure` on every response, for a server behind a TLS-terminating proxy
    /// that does not send `X-Forwarded-Proto: https` (with that header, or over https, the
    /// cookie is `Secure` anyway).
    pub secure_cookies: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            max_sessions: 10_000,
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(8 * 3600),
            secure_cookies: false,
        }
    }
}

/// Who a session belongs to, as the dashboard shows it.
#[derive(Debug, Clone)]
pub(crate) struct SessionInfo {
    pub(crate) csrf: String,
    pub(crate) key_id: uuid::Uuid,
    pub(crate) key_name: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) workspace_id: uuid::Uuid,
    pub(crate) workspace_name: String,
}

#[derive(Debug)]
struct Session {
    key: ApiKeySecret,
    info: SessionInfo,
    created: Instant,
    last_used: Instant,
}

/// The server's dashboard sessions, in memory, shared by clones.
#[derive(Debug, Clone)]
pub struct Sessions {
    config: Arc<SessionConfig>,
    // Keyed by the SHA-256 of the token, so that a lookup's timing tells nothing of the token.
    map: Arc<Mutex<HashMap<[u8; 32], Session>>>,
}

impl Default for Sessions {
    fn default() -> Self {
        Self::new(SessionConfig::default())
    }
}

/// A fresh 256-bit token, base64url.
fn token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random number generator");
    URL_SAFE_NO_PAD.encode(bytes)
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Sessions {
    /// No sessions yet.
    pub fn new(config: SessionConfig) -> Self {
        Self { config: Arc::new(config), map: Arc::default() }
    }

    /// The settings.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// How many sessions are held (ended ones included until they are swept).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<[u8; 32], Session>> {
        // A panic elsewhere while holding the lock leaves the map usable.
        self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn live(&self, session: &Session, now: Instant) -> bool {
        now.duration_since(session.last_used) < self.config.idle_timeout
            && now.duration_since(session.created) < self.config.absolute_timeout
    }

    /// Starts a session for `key`; returns its token.
    pub(crate) fn start(&self, key: ApiKeySecret, info: SessionInfo) -> String {
        let token = token();
        let now = Instant::now();
        let mut map = self.lock();
        if map.len() >= self.config.max_sessions {
            map.retain(|_, s| self.live(s, now));
        }
        while map.len() >= self.config.max_sessions.max(1) {
            let oldest = map.iter().min_by_key(|(_, s)| s.last_used).map(|(k, _)| *k);
            match oldest {
                Some(k) => map.remove(&k),
                None => break,
            };
        }
        map.insert(digest(&token), Session { key, info, created: now, last_used: now });
        token
    }

    /// The live session of `token`, marked used; an ended one is removed.
    fn with_session<T>(&self, token: &str, f: impl FnOnce(&Session) -> T) -> Option<T> {
        let now = Instant::now();
        let id = digest(token);
        let mut map = self.lock();
        let session = map.get_mut(&id)?;
        if !self.live(session, now) {
            map.remove(&id);
            return None;
        }
        session.last_used = now;
        Some(f(session))
    }

    /// Who `token`'s session belongs to, with its key.
    pub(crate) fn get(&self, token: &str) -> Option<(ApiKeySecret, SessionInfo)> {
        self.with_session(token, |s| (s.key.clone(), s.info.clone()))
    }

    /// The key of `token`'s session when `csrf` is its CSRF token (compared in constant time).
    pub(crate) fn key(&self, token: &str, csrf: &str) -> Option<ApiKeySecret> {
        self.with_session(token, |s| {
            bool::from(s.info.csrf.as_bytes().ct_eq(csrf.as_bytes())).then(|| s.key.clone())
        })
        .flatten()
    }

    /// Ends `token`'s session; returns whether there was one.
    pub(crate) fn end(&self, token: &str) -> bool {
        self.lock().remove(&digest(token)).is_some()
    }

    /// A fresh CSRF token.
    pub(crate) fn csrf_token() -> String {
        token()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> SessionInfo {
        SessionInfo {
            csrf: "c".repeat(43),
            key_id: uuid::Uuid::nil(),
            key_name: "root".into(),
            scopes: vec!["*".into()],
            workspace_id: uuid::Uuid::nil(),
            workspace_name: "default".into(),
        }
    }

    #[test]
    fn the_key_needs_the_matching_csrf_token() {
        let sessions = Sessions::default();
        let token = sessions.start(ApiKeySecret::from("kw_live_x"), info());
        assert_eq!(token.len(), 43, "256 bits, base64url");
        assert!(sessions.key(&token, &"c".repeat(43)).is_some());
        assert!(sessions.key(&token, "wrong").is_none());
        assert!(sessions.key("other", &"c".repeat(43)).is_none());
        assert!(sessions.end(&token));
        assert!(sessions.key(&token, &"c".repeat(43)).is_none());
    }

    #[test]
    fn the_least_recently_used_session_makes_room() {
        let sessions = Sessions::new(SessionConfig { max_sessions: 2, ..SessionConfig::default() });
        let a = sessions.start(ApiKeySecret::from("a"), info());
        let b = sessions.start(ApiKeySecret::from("b"), info());
        assert!(sessions.get(&a).is_some());
        let c = sessions.start(ApiKeySecret::from("c"), info());
        assert_eq!(sessions.len(), 2);
        assert!(sessions.get(&b).is_none(), "b was used least recently");
        assert!(sessions.get(&a).is_some() && sessions.get(&c).is_some());
    }

    #[test]
    fn idle_and_old_sessions_end() {
        let idle = Sessions::new(SessionConfig { idle_timeout: Duration::ZERO, ..SessionConfig::default() });
        let t = idle.start(ApiKeySecret::from("a"), info());
        assert!(idle.get(&t).is_none());
        assert!(idle.is_empty(), "an ended session is removed when seen");
        let old =
            Sessions::new(SessionConfig { absolute_timeout: Duration::ZERO, ..SessionConfig::default() });
        let t = old.start(ApiKeySecret::from("a"), info());
        assert!(old.get(&t).is_none());
    }
}
