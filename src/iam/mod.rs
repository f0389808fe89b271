//! Identity and access: users, passwords, sessions (JWT), API tokens, the
//! first-admin setup token, and the role checks every protected route uses.
//!
//! Authority always comes from the stored user, looked up on every request,
//! never from a token's claims: a deleted user or a lowered role takes effect
//! at once, not when the token expires.
//!
//! Every change (users, roles, tokens) runs as one unit of work that takes
//! the change feed's commit turn, commits, and publishes its event, so IAM
//! events interleave with flag events in the store's sequence order and a
//! client hanging up cannot lose one.

pub mod api_token;
pub mod browser;
mod cache;
pub mod jwt;
pub mod password;
pub mod throttle;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::config::IamConfig;
use crate::error::{Error, Result};
use crate::events::{ChangeEvent, ChangeFeed, Subject};
use crate::model::{ApiToken, NewApiToken, NewUser, Role, TokenKind, User};
use crate::storage::Store;
use crate::unit_of_work::run_to_completion;
use cache::Principals;
use jwt::JwtKeys;
pub use password::{normalize_email, Passwords};
use throttle::{AccountLanes, LoginThrottle, RegisterThrottle, ThrottleLimits};

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
    /// A person's session JWT, which stops working at `expires_at`.
    Session { expires_at: DateTime<Utc> },
    ApiToken {
        id: String,
        /// When the token stops working; `None` for a token that does not
        /// expire.
        expires_at: Option<DateTime<Utc>>,
        /// `Client` tokens only evaluate (see `Caller::is_client`).
        kind: TokenKind,
    },
}

impl Caller {
    /// Whether the credential is a public `client` token: it may evaluate
    /// for the context it supplies and nothing else (no definition, no
    /// write). The HTTP layer refuses such callers everywhere but the
    /// evaluation routes; `require` refuses them too, as a second line.
    pub fn is_client(&self) -> bool {
        matches!(
            self.credential,
            Credential::ApiToken {
                kind: TokenKind::Client,
                ..
            }
        )
    }

    /// Whether the credential is a machine's (an API token of either kind),
    /// which evaluates for the context it supplies, rather than a person's
    /// session (see `crate::evaluation_context`).
    pub fn is_machine(&self) -> bool {
        matches!(self.credential, Credential::ApiToken { .. })
    }

    /// Refuses a client token: for the few places that are not a role check
    /// but must still stay out of a public credential's reach.
    pub fn require_not_client(&self) -> Result<()> {
        if self.is_client() {
            Err(Error::Forbidden(
                "a client token can only evaluate flags (OFREP, POST /api/v1/evaluate, GET /ofrep/v1/events); use a server token or a session for anything else, such as recording metric events".into(),
            ))
        } else {
            Ok(())
        }
    }

    pub fn require(&self, needed: Role) -> Result<()> {
        self.require_not_client()?;
        if self.role >= needed {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "this needs the {needed} role; the caller has {}",
                self.role
            )))
        }
    }

    /// When the caller's credential stops working, if it is an expiring API
    /// token. Sessions are the person; their tokens may outlive a session.
    fn expires_at(&self) -> Option<DateTime<Utc>> {
        match &self.credential {
            Credential::ApiToken { expires_at, .. } => *expires_at,
            Credential::Session { .. } => None,
        }
    }

    /// Refuses to grant lasting rights above `user` (a role on an account,
    /// which never expires) with a credential that expires: a short-lived
    /// token must not leave behind something that outlives it.
    fn require_lasting(&self, granted: Role) -> Result<()> {
        match self.expires_at() {
            Some(at) if granted > Role::User => Err(Error::Forbidden(format!(
                "an API token that expires (at {at}) cannot grant the lasting {granted} role; use a session"
            ))),
            _ => Ok(()),
        }
    }
}

/// A credential `Iam::authenticate_remembered` verified, and what it
/// concluded; held by one connection, dropped with it.
pub struct Remembered {
    presented: Box<str>,
    caller: Caller,
    generation: u64,
    /// When the credential stops working, if it does.
    until: Option<std::time::SystemTime>,
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
    feed: Arc<ChangeFeed>,
    passwords: Passwords,
    jwt: JwtKeys,
    throttle: LoginThrottle,
    account_lanes: AccountLanes,
    registrations: RegisterThrottle,
    /// Set once an admin is known to exist; admins never drop to zero (the
    /// store refuses to remove the last one), so it never goes back.
    admin_exists: AtomicBool,
    setup: Mutex<Option<SetupToken>>,
    setup_ttl: Duration,
    principals: Principals,
}

const JWT_SECRET_SETTING: &str = "iam.jwt_secret";
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(10 * 366 * 86_400);
/// Lanes for account-wide slowing of logins (see `throttle::AccountLanes`).
const ACCOUNT_LANES: usize = 1024;

/// Whole seconds for a `Retry-After` header, at least one.
fn retry_after(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Iam {
    /// Resolves the signing secret (configured, or generated once and kept in
    /// the database) and, on a database without an admin, mints the one-time
    /// setup token.
    pub async fn new(
        store: Arc<dyn Store>,
        feed: Arc<ChangeFeed>,
        config: &IamConfig,
    ) -> Result<Iam> {
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
                per_account_address: config.login_max_failures,
                per_address: config.login_max_failures_per_ip,
                window: config.login_lockout.get(),
                max_entries: throttle::MAX_ENTRIES,
            }),
            account_lanes: AccountLanes::new(ACCOUNT_LANES),
            registrations: RegisterThrottle::new(
                config.register_max_per_ip,
                config.login_lockout.get(),
                throttle::MAX_ENTRIES,
            ),
            admin_exists: AtomicBool::new(false),
            setup: Mutex::new(None),
            setup_ttl: config.setup_token_ttl.get(),
            principals: Principals::default(),
            store,
            feed,
        };
        if iam.store.has_admin().await? {
            iam.admin_exists.store(true, Ordering::Release);
        } else {
            *iam.setup.lock().expect("setup lock") = Some(SetupToken {
                secret: random_secret(),
                expires: Instant::now() + iam.setup_ttl,
            });
        }
        Ok(iam)
    }

    /// Whether an admin exists; asks the store until one does, because the
    /// CLI may create one from another process at any time.
    async fn admin_exists(&self) -> Result<bool> {
        if self.admin_exists.load(Ordering::Acquire) {
            return Ok(true);
        }
        let exists = self.store.has_admin().await?;
        if exists {
            self.admin_exists.store(true, Ordering::Release);
        }
        Ok(exists)
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
        Ok(!self.admin_exists().await?)
    }

    /// Creates the first admin with the one-time token and logs them in.
    pub async fn complete_setup(
        self: &Arc<Self>,
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
        let this = self.clone();
        // Commit and retiring the token are one unit: a hang-up between
        // them would leave a used token pending.
        let user = run_to_completion(async move {
            let turn = this.feed.begin().await;
            let user = this
                .store
                .create_first_admin(NewUser {
                    email,
                    password_hash,
                    role: Role::Admin,
                })
                .await;
            if let Ok(change) = &user {
                // The first admin is their own actor, as in the audit log.
                let actor = change.value.id.clone();
                turn.publish(ChangeEvent::user(Subject::UserCreated, &actor, change));
            }
            // Whatever happened, an admin now exists or the token was used:
            // either way it must not work again.
            if matches!(&user, Ok(_) | Err(Error::Conflict(_))) {
                this.setup.lock().expect("setup lock").take();
                this.admin_exists.store(true, Ordering::Release);
            }
            user.map(|change| change.value)
        })
        .await;
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
    ///
    /// Everything that can refuse the request (role, email and password
    /// rules, the per-address budget, a taken email) is checked before the
    /// password is hashed, so a refused request costs no argon2 work.
    /// Self-service sign-up opens only once an admin exists: before that,
    /// anyone could take the address the operator means to use in setup.
    pub async fn register(
        &self,
        caller: Option<&Caller>,
        email: &str,
        password: &str,
        role: Option<Role>,
        address: Option<IpAddr>,
    ) -> Result<User> {
        let role = role.unwrap_or(Role::User);
        let admin = caller.filter(|c| c.role == Role::Admin && !c.is_client());
        if role != Role::User && admin.is_none() {
            return Err(Error::Forbidden(format!(
                "only an admin can assign the {role} role"
            )));
        }
        if let Some(admin) = admin {
            admin.require_lasting(role)?;
        } else {
            if !self.admin_exists().await? {
                return Err(Error::Forbidden(
                    "registration opens once the first admin exists: complete setup first (POST /setup or `flagbase user create --role admin`)".into(),
                ));
            }
            self.registrations
                .take(address)
                .map_err(|wait| Error::Throttled {
                    message: "too many registrations from this address; try again later".into(),
                    retry_after_secs: retry_after(wait),
                })?;
        }
        let email = normalize_email(email)?;
        Passwords::check_policy(password)?;
        if self.store.user_by_email(&email).await?.is_some() {
            return Err(Error::Conflict(format!(
                "a user with email {email} already exists"
            )));
        }
        let actor = caller.map_or("anonymous", |c| c.user.id.as_str());
        self.create_user(email, password, role, actor).await
    }

    /// Creates a user without any caller check: for `register` and the CLI.
    /// The commit and its event are one unit that finishes even if the
    /// client hangs up.
    pub async fn create_user(
        &self,
        email: String,
        password: &str,
        role: Role,
        actor: &str,
    ) -> Result<User> {
        let password_hash = self.passwords.hash(password).await?;
        let (store, feed, actor) = (self.store.clone(), self.feed.clone(), actor.to_string());
        run_to_completion(async move {
            let turn = feed.begin().await;
            let change = store
                .create_user(
                    NewUser {
                        email,
                        password_hash,
                        role,
                    },
                    &actor,
                )
                .await?;
            turn.publish(ChangeEvent::user(Subject::UserCreated, &actor, &change));
            let user = change.value;
            tracing::info!(user_id = %user.id, role = %user.role, "user created");
            Ok(user)
        })
        .await
    }

    /// Checks a password. An unknown email and a wrong password take the same
    /// path (a full argon2 verification) and give the same error.
    ///
    /// The attempt takes its throttle slot before anything is verified, so at
    /// most the limit of guesses is ever checked, whatever the concurrency; a
    /// request dropped half-way keeps its slot as a failure. The email is
    /// normalised exactly as at registration, and only the normalised form
    /// (bounded, hashed) becomes a throttle key; input that cannot be an
    /// email costs the address a slot and is refused without hashing (its
    /// invalidity is no secret, so answering faster reveals nothing).
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        address: Option<IpAddr>,
    ) -> Result<Session> {
        let user = self.check_login(email, password, address).await?;
        self.session(&user)
    }

    /// The password check behind `login`, throttle included, for every kind
    /// of session (JWT or browser cookie): the user when it succeeds.
    pub async fn check_login(
        &self,
        email: &str,
        password: &str,
        address: Option<IpAddr>,
    ) -> Result<User> {
        let account = normalize_email(email).ok();
        let attempt = self
            .throttle
            .begin(account.as_deref(), address)
            .map_err(|wait| Error::Throttled {
                message: "too many failed logins; try again later".into(),
                retry_after_secs: retry_after(wait),
            })?;
        let invalid = || Error::Unauthenticated("invalid credentials".into());
        let Some(account) = account else {
            return Err(invalid());
        };
        // Account-wide, guesses from many addresses are slowed (one
        // verification at a time), never refused.
        let turn = self.account_lanes.turn(&account).await;
        // Over-long input is refused before hashing, as a failure like any other.
        let user = if password.len() <= password::MAX_PASSWORD_BYTES {
            self.store.user_by_email(&account).await?
        } else {
            None
        };
        let ok = self
            .passwords
            .verify_holding(
                password,
                user.as_ref().map(|u| u.password_hash.as_str()),
                Some(turn),
            )
            .await?;
        match user {
            Some(user) if ok => {
                attempt.succeeded();
                Ok(user)
            }
            _ => Err(invalid()),
        }
    }

    /// The stored user as authentication sees it (through the cache that
    /// role changes and deletions invalidate).
    pub async fn current_user(&self, id: &str) -> Result<Option<User>> {
        self.principals.user(self.store.as_ref(), id).await
    }

    fn session(&self, user: &User) -> Result<Session> {
        let (token, expires_at) = self.jwt.issue(user)?;
        Ok(Session { token, expires_at })
    }

    /// `authenticate`, remembering the answer for a connection that keeps
    /// presenting the same credential (the gateway's own HTTP/1 path): the
    /// same bytes, while no user or token has changed since (the principal
    /// cache's generation, which every role change, deletion and revocation
    /// bumps) and before the credential expires, are the same caller, so
    /// the secret is not hashed, nor the signature checked, again. The
    /// comparison with the remembered credential is constant-time.
    pub async fn authenticate_remembered<'m>(
        &self,
        bearer: &str,
        memo: &'m mut Option<Remembered>,
    ) -> Result<&'m Caller> {
        // `SystemTime`: `Utc::now` also works out the calendar date.
        let now = std::time::SystemTime::now();
        let still = memo.as_ref().is_some_and(|m| {
            bool::from(m.presented.as_bytes().ct_eq(bearer.as_bytes()))
                && m.generation == self.principals.generation()
                && m.until.is_none_or(|until| now < until)
        });
        if !still {
            *memo = None;
            // Read before authenticating: a change that lands meanwhile
            // makes the memo stale at once.
            let generation = self.principals.generation();
            let caller = self.authenticate(bearer).await?;
            let until = match &caller.credential {
                Credential::Session { expires_at } => Some(*expires_at),
                Credential::ApiToken { expires_at, .. } => *expires_at,
            };
            *memo = Some(Remembered {
                presented: bearer.into(),
                caller,
                generation,
                until: until.map(std::time::SystemTime::from),
            });
        }
        Ok(&memo.as_ref().expect("remembered above").caller)
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
        // `verify` requires `exp`; an out-of-range one cannot have passed it.
        let expires_at = Utc
            .timestamp_opt(claims.exp, 0)
            .single()
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        Ok(Caller {
            role: user.role,
            user,
            credential: Credential::Session { expires_at },
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
            credential: Credential::ApiToken {
                id: token.id,
                expires_at: token.expires_at,
                kind: token.kind,
            },
        })
    }

    pub async fn users(&self, caller: &Caller) -> Result<Vec<User>> {
        caller.require(Role::Admin)?;
        self.store.users().await
    }

    /// Changes a user's role. The commit and the cache invalidation are one
    /// unit that finishes even if the client hangs up, so the role in force
    /// is always the stored one.
    pub async fn set_role(self: &Arc<Self>, caller: &Caller, id: &str, role: Role) -> Result<User> {
        caller.require(Role::Admin)?;
        caller.require_lasting(role)?;
        let (this, by, id) = (self.clone(), caller.user.id.clone(), id.to_string());
        run_to_completion(async move {
            let turn = this.feed.begin().await;
            let change = this.store.set_user_role(&id, role, &by).await?;
            this.principals.invalidate();
            turn.publish(ChangeEvent::user(Subject::UserRoleChanged, &by, &change));
            tracing::info!(user_id = %id, role = %role, by = %by, "role changed");
            Ok(change.value)
        })
        .await
    }

    /// Deletes a user and their tokens; commit and invalidation are one unit.
    pub async fn delete_user(self: &Arc<Self>, caller: &Caller, id: &str) -> Result<()> {
        caller.require(Role::Admin)?;
        let (this, by, id) = (self.clone(), caller.user.id.clone(), id.to_string());
        run_to_completion(async move {
            let turn = this.feed.begin().await;
            let change = this.store.delete_user(&id, &by).await?;
            this.principals.invalidate();
            turn.publish(ChangeEvent::user(Subject::UserDeleted, &by, &change));
            tracing::info!(user_id = %id, by = %by, "user deleted");
            Ok(())
        })
        .await
    }

    /// Mints an API token; the plaintext is returned here and never again.
    pub async fn create_api_token(
        &self,
        caller: &Caller,
        name: &str,
        role: Role,
        kind: TokenKind,
        expires_in: Option<Duration>,
    ) -> Result<(ApiToken, String)> {
        caller.require_not_client()?;
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(Error::invalid("name", "must be 1 to 100 characters"));
        }
        // `caller.role` is already the narrower of a token's role and its
        // owner's, so a token can only mint tokens at most as strong as itself.
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
        // Nor may it outlive an expiring token that creates it. Refused
        // rather than clamped, so the caller never holds a token that dies
        // earlier than asked.
        if let Some(limit) = caller.expires_at() {
            if expires_at.is_none_or(|at| at > limit) {
                return Err(Error::Forbidden(format!(
                    "expires_in: a token created with an API token must expire no later than it does ({limit})"
                )));
            }
        }
        // A client token is public: whatever role it named, it only
        // evaluates, so it is given the least one rather than a role that
        // would read as more than it can do.
        if kind == TokenKind::Client && role != Role::User {
            return Err(Error::invalid(
                "role",
                "a client token only evaluates; create it with role user",
            ));
        }
        let minted = api_token::mint();
        let new = NewApiToken {
            id: minted.id,
            name: name.to_string(),
            role,
            kind,
            owner_id: caller.user.id.clone(),
            secret_hash: minted.secret_hash,
            expires_at,
        };
        let (store, feed, by) = (
            self.store.clone(),
            self.feed.clone(),
            caller.user.id.clone(),
        );
        // Commit and event are one unit that finishes even if the client
        // hangs up (the plaintext is then lost with the response, as the
        // token's owner would expect of an unanswered request).
        let token = run_to_completion(async move {
            let turn = feed.begin().await;
            let change = store.create_api_token(new, &by).await?;
            turn.publish(ChangeEvent::token(Subject::TokenCreated, &by, &change));
            tracing::info!(token_id = %change.value.id, role = %role, by = %by, "API token created");
            Ok::<_, Error>(change.value)
        })
        .await?;
        Ok((token, minted.plaintext))
    }

    /// The caller's tokens; an admin sees everyone's.
    pub async fn api_tokens(&self, caller: &Caller) -> Result<Vec<ApiToken>> {
        caller.require_not_client()?;
        let owner = (caller.role != Role::Admin).then_some(caller.user.id.as_str());
        self.store.api_tokens(owner).await
    }

    /// Revokes a token the caller owns (or any, for an admin), provided it
    /// is no stronger than the caller's credential: a narrow token of an
    /// admin cannot revoke the admin's broader tokens. Lookup, commit and
    /// cache invalidation are one unit that finishes even if the client
    /// hangs up, so a revoked token never keeps working.
    pub async fn revoke_api_token(self: &Arc<Self>, caller: &Caller, id: &str) -> Result<()> {
        caller.require_not_client()?;
        let (this, caller, id) = (self.clone(), caller.clone(), id.to_string());
        run_to_completion(async move {
            let token = this
                .store
                .api_token(&id)
                .await?
                .filter(|t| caller.role == Role::Admin || t.owner_id == caller.user.id)
                .ok_or_else(|| Error::NotFound(format!("token {id}")))?;
            // What the token can do now: an owner's lowered role lowers it.
            let strength = if token.owner_id == caller.user.id {
                token.role.min(caller.user.role)
            } else {
                token.role
            };
            if strength > caller.role {
                return Err(Error::Forbidden(format!(
                    "this token carries the {strength} role; the caller has {}",
                    caller.role
                )));
            }
            let turn = this.feed.begin().await;
            let change = this
                .store
                .delete_api_token(&token.id, &caller.user.id)
                .await?;
            this.principals.invalidate();
            turn.publish(ChangeEvent::token(
                Subject::TokenDeleted,
                &caller.user.id,
                &change,
            ));
            tracing::info!(token_id = %id, by = %caller.user.id, "API token revoked");
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests;
