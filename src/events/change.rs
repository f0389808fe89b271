//! The domain event of one committed change: what it is (`subject`), its
//! number in the store's change sequence (`seq`), who made it and when, and
//! a JSON payload in the shape the bus and the stream publish.
//!
//! Payloads carry no secret and no hash: users and tokens are shown through
//! their `Serialize` impls, which skip both.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use crate::model::{ApiToken, Committed, FlagRecord, User};
use crate::storage::gateway::RouteRecord;

/// What kind of change an event reports; `as_str` is its NATS subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    FlagCreated,
    FlagUpdated,
    FlagToggled,
    FlagDeleted,
    /// The anomaly detector turned a flag off; the payload carries its decision.
    FlagDisabled,
    /// A flag's guard settings changed.
    GuardUpdated,
    /// A person resolved an anomaly the detector had opened.
    AnomalyResolved,
    UserCreated,
    UserRoleChanged,
    UserDeleted,
    TokenCreated,
    TokenDeleted,
    GatewayRouteCreated,
    GatewayRouteUpdated,
    GatewayRouteDeleted,
}

impl Subject {
    pub fn as_str(self) -> &'static str {
        match self {
            Subject::FlagCreated => "flagbase.flag.created",
            Subject::FlagUpdated => "flagbase.flag.updated",
            Subject::FlagToggled => "flagbase.flag.toggled",
            Subject::FlagDeleted => "flagbase.flag.deleted",
            Subject::FlagDisabled => "flagbase.flag.disabled",
            Subject::GuardUpdated => "flagbase.guard.updated",
            Subject::AnomalyResolved => "flagbase.anomaly.resolved",
            Subject::UserCreated => "flagbase.user.created",
            Subject::UserRoleChanged => "flagbase.user.role_changed",
            Subject::UserDeleted => "flagbase.user.deleted",
            Subject::TokenCreated => "flagbase.token.created",
            Subject::TokenDeleted => "flagbase.token.deleted",
            Subject::GatewayRouteCreated => "flagbase.gateway.route.created",
            Subject::GatewayRouteUpdated => "flagbase.gateway.route.updated",
            Subject::GatewayRouteDeleted => "flagbase.gateway.route.deleted",
        }
    }

    /// The audit action the store records for a change with this subject.
    pub fn audit_action(self) -> &'static str {
        match self {
            Subject::FlagCreated => "flag.create",
            Subject::FlagUpdated => "flag.update",
            Subject::FlagToggled => "flag.toggle",
            Subject::FlagDeleted => "flag.delete",
            Subject::FlagDisabled => "flag.disable",
            Subject::GuardUpdated => "guard.set",
            Subject::AnomalyResolved => "anomaly.resolve",
            Subject::UserCreated => "user.create",
            Subject::UserRoleChanged => "user.role",
            Subject::UserDeleted => "user.delete",
            Subject::TokenCreated => "token.create",
            Subject::TokenDeleted => "token.delete",
            Subject::GatewayRouteCreated => "gateway.route.create",
            Subject::GatewayRouteUpdated => "gateway.route.update",
            Subject::GatewayRouteDeleted => "gateway.route.delete",
        }
    }

    /// The subject of a flag change the store audited as `action`.
    pub fn for_flag_action(action: &str) -> Subject {
        match action {
            "flag.toggle" => Subject::FlagToggled,
            "flag.create" => Subject::FlagCreated,
            "flag.delete" => Subject::FlagDeleted,
            "flag.disable" => Subject::FlagDisabled,
            _ => Subject::FlagUpdated,
        }
    }
}

impl Serialize for Subject {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One committed change, as every consumer of the feed sees it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChangeEvent {
    /// The change's number in the store's gapless, commit-ordered sequence:
    /// a consumer that sees it jump has missed the changes in between.
    pub seq: u64,
    pub subject: Subject,
    pub at: DateTime<Utc>,
    /// User id of who made the change (or `cli`, `anonymous`).
    pub actor: String,
    pub payload: Value,
}

impl ChangeEvent {
    /// A flag change: `{key, version, actor, at, flag}` with the flag as the
    /// API returns it; a deletion carries the flag's last version.
    pub fn flag(subject: Subject, actor: &str, change: &Committed<FlagRecord>) -> ChangeEvent {
        let flag = &change.value;
        ChangeEvent {
            seq: change.seq,
            subject,
            at: change.at,
            actor: actor.to_string(),
            payload: json!({
                "key": flag.key,
                "version": flag.version,
                "actor": actor,
                "at": change.at,
                "flag": flag.api_json(),
            }),
        }
    }

    /// A user change: `{id, actor, at, user}` (the user without its hash).
    pub fn user(subject: Subject, actor: &str, change: &Committed<User>) -> ChangeEvent {
        Self::entity(subject, actor, change, &change.value.id, "user")
    }

    /// A token change: `{id, actor, at, token}` (the token without its
    /// secret's hash; the plaintext never reaches the store at all).
    pub fn token(subject: Subject, actor: &str, change: &Committed<ApiToken>) -> ChangeEvent {
        Self::entity(subject, actor, change, &change.value.id, "token")
    }

    /// A gateway route change: `{id, actor, at, route}` with the route as
    /// the API shows it.
    pub fn gateway_route(
        subject: Subject,
        actor: &str,
        change: &Committed<RouteRecord>,
    ) -> ChangeEvent {
        Self::entity(
            subject,
            actor,
            &change.clone().map(|r| r.api_json()),
            &change.value.id,
            "route",
        )
    }

    /// `{id, actor, at, <name>: value}`; the value's own serialisation
    /// leaves out what must never leave the process (hashes).
    fn entity<T: Serialize>(
        subject: Subject,
        actor: &str,
        change: &Committed<T>,
        id: &str,
        name: &str,
    ) -> ChangeEvent {
        let mut payload = json!({ "id": id, "actor": actor, "at": change.at });
        payload[name] = json!(change.value);
        ChangeEvent {
            seq: change.seq,
            subject,
            at: change.at,
            actor: actor.to_string(),
            payload,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Role;

    #[test]
    fn user_and_token_payloads_carry_no_secret_or_hash() {
        let at = Utc::now();
        let user = Committed {
            value: User {
                id: "u1".into(),
                email: "ada@example.com".into(),
                password_hash: "$argon2id$secret-hash".into(),
                role: Role::Admin,
                created_at: at,
            },
            seq: 7,
            at,
        };
        let token = Committed {
            value: ApiToken {
                id: "t1".into(),
                name: "ci".into(),
                role: Role::User,
                kind: crate::model::TokenKind::Server,
                owner_id: "u1".into(),
                secret_hash: "deadbeef-hash".into(),
                created_at: at,
                expires_at: None,
            },
            seq: 8,
            at,
        };
        let events = [
            ChangeEvent::user(Subject::UserCreated, "cli", &user),
            ChangeEvent::token(Subject::TokenCreated, "u1", &token),
        ];
        let text = serde_json::to_string(&events).unwrap();
        assert!(
            !text.contains("secret-hash") && !text.contains("deadbeef"),
            "{text}"
        );
        assert!(
            text.contains("\"subject\":\"flagbase.user.created\""),
            "{text}"
        );
        assert_eq!(events[0].payload["user"]["email"], "ada@example.com");
        assert_eq!(events[1].payload["token"]["name"], "ci");
    }

    #[test]
    fn a_flag_event_shows_the_flag_as_the_api_does() {
        let at = Utc::now();
        let change = Committed {
            value: FlagRecord {
                key: "beta".into(),
                spec: json!({"key": "beta", "enabled": true}),
                version: 3,
                incarnation: "00".into(),
                created_at: at,
                updated_at: at,
                updated_by: "u1".into(),
            },
            seq: 42,
            at,
        };
        let event = ChangeEvent::flag(Subject::FlagDeleted, "u1", &change);
        assert_eq!(event.seq, 42);
        assert_eq!(event.payload["key"], "beta");
        assert_eq!(
            event.payload["version"], 3,
            "a deletion carries the last version"
        );
        assert_eq!(event.payload["flag"], change.value.api_json());
        assert_eq!(event.payload["flag"]["version"], 3);
    }
}
