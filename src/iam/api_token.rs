//! Machine credentials: `fbk_<id>_<secret>`. The id finds the row; only a
//! SHA-256 of the 256-bit secret is stored and it is compared in constant
//! time. A fast hash is right here: the secret is random, not a password.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const PREFIX: &str = "fbk_";

/// A freshly minted token: the full secret string is shown to its creator once.
pub struct Minted {
    pub id: String,
    pub secret_hash: String,
    pub plaintext: String,
}

pub fn mint() -> Minted {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut id);
    rand::rng().fill_bytes(&mut secret);
    let id = hex(&id);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    Minted {
        plaintext: format!("{PREFIX}{id}_{secret}"),
        secret_hash: hash_secret(&secret),
        id,
    }
}

/// Splits a presented token into `(id, secret)`, or `None` if it is not ours.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let well_formed = id.len() == 16
        && id.bytes().all(|b| b.is_ascii_hexdigit())
        && secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    well_formed.then_some((id, secret))
}

pub fn hash_secret(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

pub fn secret_matches(secret: &str, stored_hash: &str) -> bool {
    hash_secret(secret)
        .as_bytes()
        .ct_eq(stored_hash.as_bytes())
        .into()
}

/// Runs on every API-token request (`hash_secret`): one allocation, not a
/// `format!` per byte.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        text.push(char::from(DIGITS[usize::from(b >> 4)]));
        text.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_parse_and_match() {
        let m = mint();
        assert!(m.plaintext.starts_with("fbk_"));
        let (id, secret) = parse(&m.plaintext).expect("parses");
        assert_eq!(id, m.id);
        assert!(secret_matches(secret, &m.secret_hash));
        let mut wrong = secret.as_bytes().to_vec();
        wrong[0] = if wrong[0] == b'A' { b'B' } else { b'A' };
        assert!(!secret_matches(
            std::str::from_utf8(&wrong).unwrap(),
            &m.secret_hash
        ));
        assert_ne!(mint().plaintext, m.plaintext);
    }

    #[test]
    fn foreign_strings_do_not_parse() {
        for bad in [
            "",
            "fbk_",
            "fbk_abc_def",
            "eyJhbGciOi.x.y",
            "fbk_0123456789abcdef_short",
        ] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
    }
}
