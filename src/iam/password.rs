//! Password hashing with argon2id at OWASP's parameters, run on blocking
//! threads behind a semaphore so a burst of logins cannot starve the async
//! workers or exhaust memory (each hash holds 19 MiB).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::error::{Error, Result};

pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_BYTES: usize = 1024;

fn argon2() -> Argon2<'static> {
    // OWASP: m=19456 KiB, t=2, p=1.
    let params = Params::new(19_456, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A hash of a password nobody knows, verified against when an email is
/// unknown so that both kinds of failed login cost the same.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        argon2()
            .hash_password(uuid::Uuid::new_v4().as_bytes(), &salt)
            .expect("hashing a random password")
            .to_string()
    })
}

#[derive(Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
    verifications: Arc<AtomicU64>,
}

impl Passwords {
    /// `concurrency` hashes at most at once (at least one).
    pub fn new(concurrency: usize) -> Self {
        // Computed now, off the request path, so the first unknown-email
        // login is not slower than the others.
        std::thread::spawn(dummy_hash);
        Passwords {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            verifications: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Checks the length rules shared by registration, setup and the CLI.
    pub fn check_policy(password: &str) -> Result<()> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(Error::invalid("password", "must be at most 1024 bytes"));
        }
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(Error::invalid("password", "must be at least 8 characters"));
        }
        Ok(())
    }

    pub async fn hash(&self, password: &str) -> Result<String> {
        let password = password.to_string();
        self.blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            argon2()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(Error::internal)
        })
        .await
    }

    /// Verifies against `hash`, or against the dummy hash when there is none,
    /// so the caller's two failure paths do identical work.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool> {
        let password = password.to_string();
        let hash = hash.map(str::to_string);
        self.verifications.fetch_add(1, Ordering::Relaxed);
        self.blocking(move || {
            let known = hash.is_some();
            let text = hash.as_deref().unwrap_or_else(|| dummy_hash());
            let parsed = PasswordHash::new(text).map_err(Error::internal)?;
            let ok = argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok();
            Ok(ok && known)
        })
        .await
    }

    /// How many verifications ran; lets tests prove both failure paths hash.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let _permit = self.permits.acquire().await.map_err(Error::internal)?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| Error::internal(format!("password task failed: {e}")))?
    }
}

/// Validates and normalises an email: trimmed, lower-cased, one `@`, a dotted
/// domain, no spaces, at most 254 bytes.
pub fn normalize_email(email: &str) -> Result<String> {
    let email = email.trim().to_lowercase();
    let bad = |why: &str| Err(Error::invalid("email", why));
    if email.is_empty() {
        return bad("is required");
    }
    if email.len() > 254 {
        return bad("must be at most 254 bytes");
    }
    let Some((local, domain)) = email.split_once('@') else {
        return bad("is not a valid email address");
    };
    let valid = !local.is_empty()
        && local.len() <= 64
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if !valid {
        return bad("is not a valid email address");
    }
    Ok(email)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            normalize_email("  Ada@Example.COM ").unwrap(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "a b@example.com",
            "ada@example",
            "a@b@c.d",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn password_policy() {
        assert!(Passwords::check_policy("short").is_err());
        assert!(Passwords::check_policy("longenough").is_ok());
        assert!(Passwords::check_policy(&"x".repeat(1025)).is_err());
        assert!(Passwords::check_policy(&"x".repeat(1024)).is_ok());
    }

    #[tokio::test]
    async fn hash_then_verify() {
        let p = Passwords::new(1);
        let h = p.hash("correct horse").await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(p.verify("correct horse", Some(&h)).await.unwrap());
        assert!(!p.verify("wrong horse", Some(&h)).await.unwrap());
        assert!(!p.verify("correct horse", None).await.unwrap());
    }
}
