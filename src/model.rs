//! Domain records shared by the services and the storage port: users, roles,
//! API tokens, flags, audit records and committed changes. No behaviour
//! beyond what a role means and how a flag is shown.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a caller may do. Ordered: every role can do what the ones below it can.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read and evaluate flags, record events, invoke functions, use the gateway.
    User,
    /// Also manage flags and functions.
    Developer,
    /// Everything, including users and roles.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Developer => "developer",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "user" => Ok(Role::User),
            "developer" => Ok(Role::Developer),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?} (use admin, developer or user)"
            )),
        }
    }
}

/// What an API token is for. `Server` tokens (backends, local-evaluation
/// SDKs) may read definitions; `Client` tokens are public (embedded in a web
/// page or an app) and only evaluate, for the context they supply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    #[default]
    Server,
    Client,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Server => "server",
            TokenKind::Client => "client",
        }
    }
}

impl FromStr for TokenKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "server" => Ok(TokenKind::Server),
            "client" => Ok(TokenKind::Client),
            other => Err(format!(
                "unknown token kind {other:?} (use server or client)"
            )),
        }
    }
}

/// A stored user. The hash never leaves the process: it is skipped when
/// serialised, so no response can carry it by accident.
#[derive(Clone, Debug, Serialize)]
pub struct User {
    pub id: String,
    pub email: String,
    #[serde(skip_serializing)]
    pub password_hash: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug)]
pub struct NewUser {
    pub email: String,
    pub password_hash: String,
    pub role: Role,
}

/// A machine credential. Only a hash of its secret is stored.
#[derive(Clone, Debug, Serialize)]
pub struct ApiToken {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub kind: TokenKind,
    pub owner_id: String,
    #[serde(skip_serializing)]
    pub secret_hash: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug)]
pub struct NewApiToken {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub kind: TokenKind,
    pub owner_id: String,
    pub secret_hash: String,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A stored flag: the definition as the user wrote it (JSON, validated by the
/// engine before it gets here) plus what the server keeps.
#[derive(Clone, Debug, PartialEq)]
pub struct FlagRecord {
    pub key: String,
    pub spec: serde_json::Value,
    /// Starts at 1; every change adds one.
    pub version: i64,
    /// Random, fixed when the flag is created: a flag deleted and created
    /// again under the same key is another incarnation, so its ETag
    /// (`"<incarnation>-<version>"`) never equals one of its predecessor's.
    pub incarnation: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

impl FlagRecord {
    /// The flag as every API shows it: the stored definition plus the
    /// server-kept fields. One place, so REST responses and change events
    /// can never show a flag differently.
    pub fn api_json(&self) -> serde_json::Value {
        let mut body = self.spec.clone();
        if let serde_json::Value::Object(map) = &mut body {
            map.insert("version".into(), self.version.into());
            map.insert("created_at".into(), serde_json::json!(self.created_at));
            map.insert("updated_at".into(), serde_json::json!(self.updated_at));
            map.insert("updated_by".into(), self.updated_by.clone().into());
        }
        body
    }

    pub fn revision(&self) -> Revision {
        Revision {
            incarnation: self.incarnation.clone(),
            version: self.version,
        }
    }
}

/// What a conditional change requires of the stored flag: this incarnation
/// at this version (what its ETag names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revision {
    pub incarnation: String,
    pub version: i64,
}

impl std::fmt::Display for Revision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.incarnation, self.version)
    }
}

/// One state change, written in the same transaction as the change itself.
#[derive(Clone, Debug, Serialize)]
pub struct AuditRecord {
    pub id: String,
    /// The change's position in the store's change sequence (see
    /// `Committed`). `None` only for a row that did not come through the
    /// store (written into the database by hand): it is still listed.
    pub seq: Option<u64>,
    pub at: DateTime<Utc>,
    /// User id of who did it, or `cli`, `setup`, `anonymous`.
    pub actor: String,
    /// e.g. `flag.create`, `flag.toggle`, `user.role`, `token.delete`.
    pub action: String,
    /// e.g. `flag:new-checkout-ui`, `user:<id>`, `token:<id>`.
    pub target: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    /// Which of `before`/`after` are stored but cannot be read (e.g. JSON
    /// nested deeper than the parser accepts); those show as `null`. Absent
    /// from the JSON when empty, so one bad record never fails a page.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<&'static str>,
    /// Why the change was made, when its author said (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Newest first; `cursor` is the id of the last record of the previous page.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub target: Option<String>,
    pub actor: Option<String>,
    pub limit: usize,
    pub cursor: Option<String>,
}

/// What a state-changing store method returns: the value it committed and
/// the change's place in the store's change sequence.
///
/// The sequence is gapless and in commit order: the store takes the next
/// number inside the committing transaction (so a change that rolls back
/// takes none) and writes it on the change's audit record. Event consumers
/// (the bus, the stream) use it to notice a gap and to resume.
#[derive(Clone, Debug, PartialEq)]
pub struct Committed<T> {
    pub value: T,
    /// 1 for the first change ever stored, then one more per change.
    pub seq: u64,
    /// When the change was committed, as its audit record says.
    pub at: DateTime<Utc>,
}

impl<T> Committed<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Committed<U> {
        Committed {
            value: f(self.value),
            seq: self.seq,
            at: self.at,
        }
    }
}
