//! HS256 bearer tokens for users. The algorithm is pinned on both sides, so a
//! token claiming `none` or an asymmetric algorithm is refused, and there is
//! no leeway: an expired token stops working at its `exp`.

use chrono::{DateTime, TimeZone, Utc};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{Role, User};

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub email: String,
    /// Informational only: authority comes from the stored user on each request.
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
}

pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    ttl: chrono::Duration,
}

impl JwtKeys {
    pub fn new(secret: &[u8], issuer: &str, ttl: std::time::Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: issuer.to_string(),
            ttl: chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX),
        }
    }

    /// A token for `user` and the moment it stops working.
    pub fn issue(&self, user: &User) -> Result<(String, DateTime<Utc>)> {
        let now = Utc::now();
        let expires = now
            .checked_add_signed(self.ttl)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let claims = Claims {
            sub: user.id.clone(),
            email: user.email.clone(),
            role: user.role,
            iat: now.timestamp(),
            exp: expires.timestamp(),
            iss: self.issuer.clone(),
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(Error::internal)?;
        let expires = Utc.timestamp_opt(claims.exp, 0).single().unwrap_or(expires);
        Ok((token, expires))
    }

    pub fn verify(&self, token: &str) -> Result<Claims> {
        use jsonwebtoken::errors::ErrorKind;
        let claims = decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| {
                Error::Unauthenticated(match e.kind() {
                    ErrorKind::ExpiredSignature => "token expired; log in again".into(),
                    _ => "invalid token".into(),
                })
            })?;
        // The library still accepts a token during its `exp` second; it
        // stops working at `exp`, as `issue` says and as a stream closes.
        if claims.exp <= Utc::now().timestamp() {
            return Err(Error::Unauthenticated("token expired; log in again".into()));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> User {
        User {
            id: "u1".into(),
            email: "a@x.io".into(),
            password_hash: String::new(),
            role: Role::Admin,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn round_trip_and_tamper() {
        let keys = JwtKeys::new(&[7; 32], "flagbase", std::time::Duration::from_secs(60));
        let (token, _) = keys.issue(&user()).unwrap();
        assert_eq!(keys.verify(&token).unwrap().sub, "u1");
        let other = JwtKeys::new(&[8; 32], "flagbase", std::time::Duration::from_secs(60));
        assert!(
            other.verify(&token).is_err(),
            "another secret must not verify"
        );
        let foreign_issuer =
            JwtKeys::new(&[7; 32], "elsewhere", std::time::Duration::from_secs(60));
        assert!(foreign_issuer.verify(&token).is_err());
    }

    #[test]
    fn alg_none_is_refused() {
        let keys = JwtKeys::new(&[7; 32], "flagbase", std::time::Duration::from_secs(60));
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let now = Utc::now().timestamp();
        let body = b64.encode(format!(
            r#"{{"sub":"u1","email":"a@x.io","role":"admin","iat":{now},"exp":{},"iss":"flagbase"}}"#,
            now + 60
        ));
        assert!(keys.verify(&format!("{header}.{body}.")).is_err());
    }
}
