//! Browser sessions for the web console: an opaque random id in an
//! `HttpOnly` cookie, of which the store keeps only the SHA-256, and a CSRF
//! token derived from the id (so a reload can recover it and nothing more
//! needs storing).
//!
//! Expiry is fixed (`ui.session_ttl` from login, not sliding): a stolen
//! cookie stops working at a known time whatever its use. A session ends
//! at logout, when its user is deleted (the row goes with the user), and
//! when the user's role differs from the role at login (it is deleted on
//! first use afterwards): a demoted admin's open console does not keep a
//! stale view of their rights, and every request still reads the role
//! fresh.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Caller, Credential, Iam};
use crate::error::{Error, Result};
use crate::model::User;
use crate::storage::sessions::{SessionRecord, SessionStore};

/// The console's session cookie. It is a credential for Flagbase only: the
/// gateway never passes it to an upstream nor offers it to rules.
pub const COOKIE_NAME: &str = "flagbase_session";

/// Longest cookie value we could have issued (32 bytes in base64url is 43).
const MAX_ID_BYTES: usize = 64;

pub struct BrowserSessions {
    iam: Arc<Iam>,
    store: Arc<dyn SessionStore>,
    ttl: Duration,
}

/// A new session, as login hands it to the HTTP layer.
pub struct NewSession {
    /// The cookie value; shown once, never stored.
    pub id: String,
    pub csrf_token: String,
    pub user: User,
    pub expires_at: DateTime<Utc>,
}

/// A session in force for a request.
pub struct ActiveSession {
    pub caller: Caller,
    pub csrf_token: String,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn id_hash(id: &str) -> String {
    Sha256::digest(id.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The CSRF token of session `id`: another hash of the id, in its own
/// domain, so neither the token nor the stored hash reveals the other.
fn csrf_of(id: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"flagbase csrf\0");
    hasher.update(id.as_bytes());
    b64(&hasher.finalize())
}

fn ended() -> Error {
    Error::Unauthenticated("the console session has ended; log in again".into())
}

impl BrowserSessions {
    pub fn new(iam: Arc<Iam>, store: Arc<dyn SessionStore>, ttl: Duration) -> BrowserSessions {
        BrowserSessions { iam, store, ttl }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Checks the password exactly as `/auth/login` does (same throttle)
    /// and opens a session.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        address: Option<IpAddr>,
    ) -> Result<NewSession> {
        let user = self.iam.check_login(email, password, address).await?;
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let id = b64(&bytes);
        let created_at = Utc::now();
        let expires_at =
            created_at + chrono::Duration::from_std(self.ttl).map_err(Error::internal)?;
        // Expired rows are swept at each login, so the table stays the size
        // of the sessions in force.
        self.store.delete_expired_sessions(created_at).await?;
        self.store
            .create_session(SessionRecord {
                id_hash: id_hash(&id),
                user_id: user.id.clone(),
                role: user.role,
                created_at,
                expires_at,
            })
            .await?;
        tracing::info!(user_id = %user.id, "console session opened");
        Ok(NewSession {
            csrf_token: csrf_of(&id),
            id,
            user,
            expires_at,
        })
    }

    /// The session the cookie value `id` names, if it is in force.
    pub async fn authenticate(&self, id: &str) -> Result<ActiveSession> {
        if id.is_empty() || id.len() > MAX_ID_BYTES {
            return Err(ended());
        }
        let hash = id_hash(id);
        let record = self.store.session(&hash).await?.ok_or_else(ended)?;
        if record.expires_at <= Utc::now() {
            self.store.delete_session(&hash).await?;
            return Err(ended());
        }
        let Some(user) = self.iam.current_user(&record.user_id).await? else {
            self.store.delete_session(&hash).await?;
            return Err(ended());
        };
        if user.role != record.role {
            self.store.delete_session(&hash).await?;
            tracing::info!(user_id = %user.id, "console session ended: the user's role changed");
            return Err(ended());
        }
        Ok(ActiveSession {
            caller: Caller {
                role: user.role,
                user,
                credential: Credential::Session {
                    expires_at: record.expires_at,
                },
            },
            csrf_token: csrf_of(id),
        })
    }

    /// Ends the session `id` names; whether there was one.
    pub async fn logout(&self, id: &str) -> Result<bool> {
        if id.is_empty() || id.len() > MAX_ID_BYTES {
            return Ok(false);
        }
        self.store.delete_session(&id_hash(id)).await
    }
}

/// Compares a presented CSRF token with the session's in constant time.
pub fn csrf_matches(presented: &str, expected: &str) -> bool {
    presented.len() == expected.len() && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csrf_token_is_neither_the_id_nor_its_stored_hash() {
        let id = "abc";
        assert_ne!(csrf_of(id), id);
        assert_ne!(csrf_of(id), id_hash(id));
        assert_eq!(csrf_of(id), csrf_of(id));
        assert!(csrf_matches(&csrf_of(id), &csrf_of(id)));
        assert!(!csrf_matches(&csrf_of("abd"), &csrf_of(id)));
        assert!(!csrf_matches("", &csrf_of(id)));
    }
}
