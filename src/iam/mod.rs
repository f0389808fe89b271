//! Identity and access: users, passwords, sessions (JWT), API tokens, the
//! first-admin setup token, and the role checks every protected route uses.
//!
//! Authority always comes from the stored user, looked up on every request,
//! never from a token's claims: a deleted user or a lowered role takes effect
//! at once, not when the token expires.

pub mod api_token;
mod cache;
pub mod jwt;
pub mod password;
pub mod throttle;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::config::IamConfig;
use crate::error::{Error, Result};
use crate::model::{ApiToken, NewApiToken, NewUser, Role, User};
use crate::storage::Store;
use cache::Principals;
use jwt::JwtKeys;
pub use password::{normalize_email, Passwords};
use throttle::{LoginThrottle, ThrottleLimits};

/// Who is calling, with the rights in force right now.
#[derive(Clone, Debug)]
pub struct Caller {
    pub user: User,
    /// The user's role, or less when the credential is a narrower API token.
    pub role: Role,
    pub credential: Credential,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    Session,
    ApiToken { id: String },
}

impl Caller {
    pub fn require(&self, needed: Role) -> Result<()> {
        if self.role >= needed {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "this needs the {needed} role; the caller has {}",
                self.role
            )))
        }
    }
}

/// A session token handed out by login or setup.
#[derive(Clone, Debug)]
pub struct Session {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

struct SetupToken {
    secret: String,
    expires: Instant,
}

pub struct Iam {
    store: Arc<dyn Store>,
    passwords: Passwords,
    jwt: JwtKeys,
    throttle: LoginThrottle,
    setup: Mutex<Option<SetupToken>>,
    setup_ttl: Duration,
    principals: Principals,
}

const JWT_SECRET_SETTING: &str = "iam.jwt_secret";
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(10 * 366 * 86_400);

fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Iam {
    /// Resolves the signing secret (configured, or generated once and kept in
    /// the database) and, on a database without an admin, mints the one-time
    /// setup token.
    pub async fn new(store: Arc<dyn Store>, config: &IamConfig) -> Result<Iam> {
        let secret = match &config.jwt_secret {
            Some(secret) => secret.clone(),
            None => {
                store
                    .init_setting(JWT_SECRET_SETTING, &random_secret())
                    .await?
            }
        };
        let concurrency = match config.hash_concurrency {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let iam = Iam {
            passwords: Passwords::new(concurrency),
            jwt: JwtKeys::new(secret.as_bytes(), &config.issuer, config.token_ttl.get()),
            throttle: LoginThrottle::new(ThrottleLimits {
                per_account: config.login_max_failures,
                per_address: config.login_max_failures_per_ip,
                window: config.login_lockout.get(),
            }),
            setup: Mutex::new(None),
            setup_ttl: config.setup_token_ttl.get(),
            principals: Principals::default(),
            store,
        };
        if !iam.store.has_admin().await? {
            *iam.setup.lock().expect("setup lock") = Some(SetupToken {
                secret: random_secret(),
                expires: Instant::now() + iam.setup_ttl,
            });
        }
        Ok(iam)
    }

    pub fn passwords(&self) -> &Passwords {
        &self.passwords
    }

    /// The setup token for the start-up banner, while one is pending.
    pub fn pending_setup_token(&self) -> Option<String> {
        let guard = self.setup.lock().expect("setup lock");
        guard
            .as_ref()
            .filter(|t| Instant::now() < t.expires)
            .map(|t| t.secret.clone())
    }

    pub fn setup_token_ttl(&self) -> Duration {
        self.setup_ttl
    }

    pub async fn needs_setup(&self) -> Result<bool> {
        Ok(!self.store.has_admin().await?)
    }

    /// Creates the first admin with the one-time token and logs them in.
    pub async fn complete_setup(
        &self,
        token: &str,
        email: &str,
        password: &str,
    ) -> Result<Session> {
        {
            let guard = self.setup.lock().expect("setup lock");
            let pending = guard.as_ref().ok_or_else(|| {
                Error::Conflict("setup is already complete; log in instead".into())
            })?;
            if !bool::from(pending.secret.as_bytes().ct_eq(token.as_bytes())) {
                return Err(Error::Unauthenticated("invalid setup token".into()));
            }
            if Instant::now() >= pending.expires {
                return Err(Error::Unauthenticated(
                    "setup token expired; restart flagbase for a new one, or run `flagbase user create --role admin`".into(),
                ));
            }
        }
        let email = normalize_email(email)?;
        Passwords::check_policy(password)?;
        let password_hash = self.passwords.hash(password).await?;
        let user = self
            .store
            .create_first_admin(NewUser {
                email,
                password_hash,
                role: Role::Admin,
            })
            .await;
        // Whatever happened, an admin now exists or the token was used: either
        // way it must not work again.
        if matches!(&user, Ok(_) | Err(Error::Conflict(_))) {
            self.setup.lock().expect("setup lock").take();
        }
        let user = user.map_err(|e| match e {
            Error::Conflict(_) => {
                Error::Conflict("setup is already complete; log in instead".into())
            }
            other => other,
        })?;
        tracing::info!(user_id = %user.id, "first admin created through setup");
        self.session(&user)
    }

    /// Self-service sign-up (role `user`), or any role when an admin asks.
    pub async fn register(
        &self,
        caller: Option<&Caller>,
        email: &str,
        password: &str,
        role: Option<Role>,
    ) -> Result<User> {
        let role = role.unwrap_or(Role::User);
        if role != Role::User && caller.is_none_or(|c| c.role != Role::Admin) {
            return Err(Error::Forbidden(format!(
                "only an admin can assign the {role} role"
            )));
        }
        let email = normalize_email(email)?;
        Passwords::check_policy(password)?;
        let actor = caller.map_or("anonymous", |c| c.user.id.as_str());
        self.create_user(email, password, role, actor).await
    }

    /// Creates a user without any caller check: for `register` and the CLI.
    pub async fn create_user(
        &self,
        email: String,
        password: &str,
        role: Role,
        actor: &str,
    ) -> Result<User> {
        let password_hash = self.passwords.hash(password).await?;
        let user = self
            .store
            .create_user(
                NewUser {
                    email,
                    password_hash,
                    role,
                },
                actor,
            )
            .await?;
        tracing::info!(user_id = %user.id, role = %user.role, "user created");
        Ok(user)
    }

    /// Checks a password. An unknown email and a wrong password take the same
    /// path (a full argon2 verification) and give the same error.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        address: Option<IpAddr>,
    ) -> Result<Session> {
        let account = email.trim().to_lowercase();
        if let Some(wait) = self.throttle.check(&account, address) {
            return Err(Error::Throttled {
                message: "too many failed logins; try again later".into(),
                retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
            });
        }
        // Over-long input is refused before hashing, as a failure like any other.
        let user = if password.len() <= password::MAX_PASSWORD_BYTES {
            self.store.user_by_email(&account).await?
        } else {
            None
        };
        let ok = self
            .passwords
            .verify(password, user.as_ref().map(|u| u.password_hash.as_str()))
            .await?;
        match user {
            Some(user) if ok => {
                self.throttle.record_success(&account);
                self.session(&user)
            }
            _ => {
                self.throttle.record_failure(&account, address);
                Err(Error::Unauthenticated("invalid credentials".into()))
            }
        }
    }

    fn session(&self, user: &User) -> Result<Session> {
        let (token, expires_at) = self.jwt.issue(user)?;
        Ok(Session { token, expires_at })
    }

    /// Turns a bearer credential (JWT or `fbk_` API token) into a caller.
    pub async fn authenticate(&self, bearer: &str) -> Result<Caller> {
        if bearer.starts_with(api_token::PREFIX) {
            return self.authenticate_api_token(bearer).await;
        }
        let claims = self.jwt.verify(bearer)?;
        let user = self
            .principals
            .user(self.store.as_ref(), &claims.sub)
            .await?
            .ok_or_else(|| {
                Error::Unauthenticated("the user of this token no longer exists".into())
            })?;
        Ok(Caller {
            role: user.role,
            user,
            credential: Credential::Session,
        })
    }

    async fn authenticate_api_token(&self, presented: &str) -> Result<Caller> {
        let invalid = || Error::Unauthenticated("invalid API token".into());
        let (id, secret) = api_token::parse(presented).ok_or_else(invalid)?;
        let token = self
            .principals
            .api_token(self.store.as_ref(), id)
            .await?
            .ok_or_else(invalid)?;
        if !api_token::secret_matches(secret, &token.secret_hash) {
            return Err(invalid());
        }
        if token.expires_at.is_some_and(|at| at <= Utc::now()) {
            return Err(Error::Unauthenticated("API token expired".into()));
        }
        // The owner's rights bound the token's, even if they shrank since.
        let user = self
            .principals
            .user(self.store.as_ref(), &token.owner_id)
            .await?
            .ok_or_else(invalid)?;
        Ok(Caller {
            role: token.role.min(user.role),
            user,
            credential: Credential::ApiToken { id: token.id },
        })
    }

    pub async fn users(&self, caller: &Caller) -> Result<Vec<User>> {
        caller.require(Role::Admin)?;
        self.store.users().await
    }

    pub async fn set_role(&self, caller: &Caller, id: &str, role: Role) -> Result<User> {
        caller.require(Role::Admin)?;
        let user = self.store.set_user_role(id, role, &caller.user.id).await?;
        self.principals.invalidate();
        tracing::info!(user_id = %id, role = %role, by = %caller.user.id, "role changed");
        Ok(user)
    }

    pub async fn delete_user(&self, caller: &Caller, id: &str) -> Result<()> {
        caller.require(Role::Admin)?;
        self.store.delete_user(id, &caller.user.id).await?;
        self.principals.invalidate();
        tracing::info!(user_id = %id, by = %caller.user.id, "user deleted");
        Ok(())
    }

    /// Mints an API token; the plaintext is returned here and never again.
    pub async fn create_api_token(
        &self,
        caller: &Caller,
        name: &str,
        role: Role,
        expires_in: Option<Duration>,
    ) -> Result<(ApiToken, String)> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(Error::invalid("name", "must be 1 to 100 characters"));
        }
        if role > caller.role {
            return Err(Error::Forbidden(format!(
                "a token cannot carry more rights than its creator ({})",
                caller.role
            )));
        }
        let expires_at = match expires_in {
            None => None,
            Some(d) if d.is_zero() || d > MAX_TOKEN_LIFETIME => {
                return Err(Error::invalid(
                    "expires_in",
                    "must be between 1ms and 10 years",
                ))
            }
            Some(d) => Some(Utc::now() + chrono::Duration::from_std(d).map_err(Error::internal)?),
        };
        let minted = api_token::mint();
        let token = self
            .store
            .create_api_token(
                NewApiToken {
                    id: minted.id,
                    name: name.to_string(),
                    role,
                    owner_id: caller.user.id.clone(),
                    secret_hash: minted.secret_hash,
                    expires_at,
                },
                &caller.user.id,
            )
            .await?;
        tracing::info!(token_id = %token.id, role = %role, by = %caller.user.id, "API token created");
        Ok((token, minted.plaintext))
    }

    /// The caller's tokens; an admin sees everyone's.
    pub async fn api_tokens(&self, caller: &Caller) -> Result<Vec<ApiToken>> {
        let owner = (caller.role != Role::Admin).then_some(caller.user.id.as_str());
        self.store.api_tokens(owner).await
    }

    pub async fn revoke_api_token(&self, caller: &Caller, id: &str) -> Result<()> {
        let token = self
            .store
            .api_token(id)
            .await?
            .filter(|t| caller.role == Role::Admin || t.owner_id == caller.user.id)
            .ok_or_else(|| Error::NotFound(format!("token {id}")))?;
        self.store
            .delete_api_token(&token.id, &caller.user.id)
            .await?;
        self.principals.invalidate();
        tracing::info!(token_id = %id, by = %caller.user.id, "API token revoked");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::storage::sqlite::{SqliteOptions, SqliteStore};

    async fn iam(dir: &std::path::Path) -> Iam {
        let store = SqliteStore::open(&SqliteOptions {
            path: dir.join("t.db"),
            readers: 2,
            busy_timeout: Duration::from_secs(1),
        })
        .unwrap();
        Iam::new(Arc::new(store), &Config::default().iam)
            .await
            .unwrap()
    }

    /// Both failure paths must run one full verification and say the same
    /// thing; timing equality follows from doing the same work.
    #[tokio::test]
    async fn unknown_email_and_wrong_password_take_the_same_path() {
        let dir = tempfile::tempdir().unwrap();
        let iam = iam(dir.path()).await;
        iam.create_user(
            "ada@example.com".into(),
            "correct horse",
            Role::User,
            "test",
        )
        .await
        .unwrap();

        let before = iam.passwords().verifications();
        let wrong = iam
            .login("ada@example.com", "wrong horse", None)
            .await
            .unwrap_err();
        assert_eq!(iam.passwords().verifications(), before + 1);
        let unknown = iam
            .login("bob@example.com", "wrong horse", None)
            .await
            .unwrap_err();
        assert_eq!(iam.passwords().verifications(), before + 2);
        assert_eq!(wrong.to_string(), unknown.to_string());
        assert!(matches!(wrong, Error::Unauthenticated(_)));
        assert!(iam
            .login("ADA@example.com", "correct horse", None)
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn setup_token_is_single_use() {
        let dir = tempfile::tempdir().unwrap();
        let iam = iam(dir.path()).await;
        let token = iam
            .pending_setup_token()
            .expect("a fresh database needs setup");
        assert!(matches!(
            iam.complete_setup("not-it", "root@example.com", "long password")
                .await,
            Err(Error::Unauthenticated(_))
        ));
        iam.complete_setup(&token, "root@example.com", "long password")
            .await
            .unwrap();
        assert!(matches!(
            iam.complete_setup(&token, "root2@example.com", "long password")
                .await,
            Err(Error::Conflict(_))
        ));
        assert!(!iam.needs_setup().await.unwrap());
    }
}
