//! Password hashing with argon2id at OWASP's parameters, run on blocking
//! threads behind a semaphore so a burst of logins cannot starve the async
//! workers or exhaust memory (each hash holds 19 MiB).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use unicode_normalization::UnicodeNormalization;

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
    verified: Arc<AtomicU64>,
    hashed: Arc<AtomicU64>,
}

impl Passwords {
    /// `concurrency` hashes at most at once (at least one).
    pub fn new(concurrency: usize) -> Self {
        // Computed now, off the request path, so the first unknown-email
        // login is not slower than the others.
        std::thread::spawn(dummy_hash);
        Passwords {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            verified: Arc::new(AtomicU64::new(0)),
            hashed: Arc::new(AtomicU64::new(0)),
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
        let hashed = self.hashed.clone();
        self.blocking(None, move || {
            let salt = SaltString::generate(&mut OsRng);
            let hash = argon2()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(Error::internal);
            hashed.fetch_add(1, Ordering::SeqCst);
            hash
        })
        .await
    }

    /// Verifies against `hash`, or against the dummy hash when there is none,
    /// so the caller's two failure paths do identical work.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool> {
        self.verify_holding(password, hash, None).await
    }

    /// [`Passwords::verify`], holding `turn` (the account's lane) until the
    /// verification itself ends, even if the caller stops waiting.
    pub(crate) async fn verify_holding(
        &self,
        password: &str,
        hash: Option<&str>,
        turn: Option<OwnedSemaphorePermit>,
    ) -> Result<bool> {
        let password = password.to_string();
        let hash = hash.map(str::to_string);
        let verified = self.verified.clone();
        self.blocking(turn, move || {
            let known = hash.is_some();
            let text = hash.as_deref().unwrap_or_else(|| dummy_hash());
            let parsed = PasswordHash::new(text).map_err(Error::internal)?;
            let ok = argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok();
            // Counted once the argon2 work has run, so tests can prove that
            // every failure path paid for a full verification.
            verified.fetch_add(1, Ordering::SeqCst);
            Ok(ok && known)
        })
        .await
    }

    /// How many argon2 verifications have completed.
    pub fn verifications(&self) -> u64 {
        self.verified.load(Ordering::SeqCst)
    }

    /// How many argon2 hashes have completed.
    pub fn hashes(&self) -> u64 {
        self.hashed.load(Ordering::SeqCst)
    }

    /// Runs `f` on a blocking thread once a hashing permit is free. The
    /// permits (the global one and `turn`) move into the blocking work:
    /// if the waiting request is dropped, the work still holds them until it
    /// ends, so the concurrency cap counts work, not waiters.
    async fn blocking<T: Send + 'static>(
        &self,
        turn: Option<OwnedSemaphorePermit>,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(Error::internal)?;
        tokio::task::spawn_blocking(move || {
            let _held = (permit, turn);
            f()
        })
        .await
        .map_err(|e| Error::internal(format!("password task failed: {e}")))?
    }
}

/// Characters that display as nothing or reorder text: Unicode's format
/// characters (general category Cf: soft hyphen, zero-width spaces and
/// joiners, bidirectional controls, the byte-order mark, tags...) and the
/// other default-ignorable code points (variation selectors, the combining
/// grapheme joiner, Hangul fillers). Two addresses that differ only by these
/// look identical to a person, so none of them is allowed.
fn is_invisible(c: char) -> bool {
    matches!(
        c as u32,
        0x00AD
            | 0x034F
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x206F
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF
    )
}

/// Longest input looked at; anything longer is refused before any work.
const MAX_EMAIL_INPUT_BYTES: usize = 1024;

/// Validates and normalises an email, the one rule for registration, setup,
/// the CLI and login: trimmed; Unicode NFC; lower-cased with Unicode's full
/// default lowercase mapping (Rust's `str::to_lowercase`, so `İ` becomes
/// `i̇` and a final `Σ` becomes `ς`); NFC again (lowercasing can
/// decompose); then one `@`, a dotted domain, no whitespace, control or
/// invisible characters, at most 254 bytes.
pub fn normalize_email(email: &str) -> Result<String> {
    let bad = |why: &str| Err(Error::invalid("email", why));
    if email.len() > MAX_EMAIL_INPUT_BYTES {
        return bad("must be at most 254 bytes");
    }
    let nfc: String = email.trim().nfc().collect();
    let email: String = nfc.to_lowercase().nfc().collect();
    if email.is_empty() {
        return bad("is required");
    }
    if email.len() > 254 {
        return bad("must be at most 254 bytes");
    }
    if email
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || is_invisible(c))
    {
        return bad("must not contain spaces, control or invisible characters");
    }
    let Some((local, domain)) = email.split_once('@') else {
        return bad("is not a valid email address");
    };
    let valid = !local.is_empty()
        && local.len() <= 64
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.');
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
            "a\u{200B}da@example.com",
            "ada\u{00AD}@example.com",
            "\u{202E}ada@example.com",
            "ada@exa\u{2060}mple.com",
            "\u{FEFF}ada@example.com",
            "ada\u{2066}@example.com",
            "ada\u{0007}@example.com",
            "ada\u{FE0F}@example.com",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn regression_nfc_and_nfd_spellings_normalise_to_one_address() {
        let nfc = normalize_email("Jos\u{00E9}@example.com").unwrap();
        let nfd = normalize_email("Jose\u{0301}@example.com").unwrap();
        assert_eq!(nfc, nfd);
        assert_eq!(nfc, "jos\u{00E9}@example.com");
        // Upper-case NFD input lowercases and recomposes to the same address.
        assert_eq!(normalize_email("JOSE\u{0301}@EXAMPLE.COM").unwrap(), nfc);
        // The documented case rule: Unicode full lowercase mapping.
        assert_eq!(
            normalize_email("\u{0130}@example.com").unwrap(),
            "i\u{0307}@example.com"
        );
    }

    #[test]
    fn oversized_input_is_refused_before_normalising() {
        let huge = format!("{}@example.com", "a".repeat(1 << 20));
        assert!(normalize_email(&huge).is_err());
    }

    #[tokio::test]
    async fn regression_a_dropped_request_keeps_the_hash_permit_until_the_work_ends() {
        let p = Passwords::new(1);
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let waiter = {
            let p = p.clone();
            tokio::spawn(async move {
                p.blocking(None, move || {
                    let _ = started_tx.send(());
                    let _ = release_rx.recv();
                    Ok(())
                })
                .await
            })
        };
        started_rx.await.unwrap();
        waiter.abort();
        assert!(waiter.await.unwrap_err().is_cancelled());
        // The request is gone, the work is not: its permit is still taken.
        assert_eq!(p.permits.available_permits(), 0);
        release_tx.send(()).unwrap();
        let _permit = p.permits.acquire().await.unwrap();
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
