//! The embedded NATS-protocol bus wired to Flagbase: who may connect and do
//! what (`BusAuth`, over `Iam`), the task that publishes every change of the
//! feed on its subject through an `async_nats` client (`publish_changes`),
//! and the task that cuts a principal's connections when its credentials
//! are revoked (`cut_revoked`).
//!
//! Rights. A client's NATS token (`auth_token` in `CONNECT`, or the password
//! of user/password) is a Flagbase credential: an `fbk_` API token or a
//! session JWT, whose effective role decides. Nobody but Flagbase publishes
//! under `flagbase.>`. Any role subscribes to `flagbase.flag.>`; a
//! subscription that could match `flagbase.user.>` or `flagbase.token.>`
//! (`>`, `flagbase.>`, `*.user.*`…) needs admin, because the bus hook
//! decides per subscription, not per delivered message: refusing it is the
//! only way a wildcard cannot leak IAM events. Other subjects are free.
//! Flagbase's own connection presents a random per-process token.

use std::sync::Arc;

use serde_json::Value;
use subtle::ConstantTimeEq;

use flagbase_bus::codec::Connect;
use flagbase_bus::{Authorise, Handle, Permissions};

use super::{ChangeEvent, Received, Subject, Subscription};
use crate::iam::Iam;
use crate::model::Role;

/// Subjects only admins may receive (beside Flagbase's own connection).
/// Gateway routes name upstream addresses, which only admins may read.
const ADMIN_ONLY: [&str; 3] = ["flagbase.user.>", "flagbase.token.>", "flagbase.gateway.>"];
/// The subject space only Flagbase publishes into.
const RESERVED: &str = "flagbase.>";

/// Decides bus connections with Flagbase's credentials.
pub struct BusAuth {
    iam: Arc<Iam>,
    anonymous: bool,
    internal_token: String,
}

impl BusAuth {
    /// `anonymous`: whether clients without a credential get in (as role
    /// `user`). `internal_token` is what Flagbase's own connection presents.
    pub fn new(iam: Arc<Iam>, anonymous: bool, internal_token: String) -> BusAuth {
        BusAuth {
            iam,
            anonymous,
            internal_token,
        }
    }

    fn authenticate(&self, token: &str) -> Option<ClientRights> {
        // The hook is synchronous and a credential may need the store; the
        // server runs on the multi-threaded runtime, where this blocks only
        // the connecting client's task. Elsewhere (a current-thread runtime
        // could not make progress) the credential is refused.
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        if runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            tracing::warn!("bus credentials need the multi-threaded runtime; refusing");
            return None;
        }
        let caller =
            tokio::task::block_in_place(|| runtime.block_on(self.iam.authenticate(token))).ok()?;
        Some(ClientRights {
            role: caller.role,
            principal: Some(caller.user.id),
        })
    }
}

impl Authorise for BusAuth {
    fn auth_required(&self) -> bool {
        !self.anonymous
    }

    fn connect(&self, connect: &Connect) -> Option<Arc<dyn Permissions>> {
        let token = connect
            .auth_token
            .as_deref()
            .or(connect.pass.as_deref())
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return self.anonymous.then(|| {
                Arc::new(ClientRights {
                    role: Role::User,
                    principal: None,
                }) as Arc<dyn Permissions>
            });
        };
        if bool::from(token.as_bytes().ct_eq(self.internal_token.as_bytes())) {
            return Some(Arc::new(flagbase_bus::AllowAll));
        }
        let rights = self.authenticate(token);
        if rights.is_none() {
            tracing::debug!("bus connection refused: invalid credential");
        }
        rights.map(|r| Arc::new(r) as Arc<dyn Permissions>)
    }
}

/// What a client connection may do: its effective role, and the user it
/// acts for (so revocation can cut it).
struct ClientRights {
    role: Role,
    principal: Option<String>,
}

impl Permissions for ClientRights {
    fn may_publish(&self, subject: &str) -> bool {
        !overlaps(subject, RESERVED)
    }

    fn may_subscribe(&self, subject: &str, _queue: Option<&str>) -> bool {
        self.role >= Role::Admin || !ADMIN_ONLY.iter().any(|p| overlaps(subject, p))
    }

    fn principal(&self) -> Option<&str> {
        self.principal.as_deref()
    }
}

/// Whether some literal subject matches both `a` and `b` (subjects or
/// wildcard patterns, as valid NATS subjects).
fn overlaps(a: &str, b: &str) -> bool {
    let mut a = a.split('.');
    let mut b = b.split('.');
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            // `>` stands for one or more tokens, so the other side must
            // still have one here.
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some(x), Some(y)) if x == y || x == "*" || y == "*" => {}
            _ => return false,
        }
    }
}

/// The bus message of one change: the payload's fields with `seq`, `at`
/// and `actor` beside them.
pub fn message(event: &ChangeEvent) -> Value {
    let mut body = match &event.payload {
        Value::Object(map) => map.clone(),
        other => {
            let mut map = serde_json::Map::new();
            map.insert("payload".into(), other.clone());
            map
        }
    };
    body.insert("seq".into(), event.seq.into());
    body.insert(
        "at".into(),
        serde_json::to_value(event.at).unwrap_or(Value::Null),
    );
    body.insert("actor".into(), event.actor.clone().into());
    Value::Object(body)
}

/// Publishes every change from `changes` on its subject through `client`,
/// in feed order, until `stop` completes (or the feed closes); then
/// publishes what is already queued and flushes, so a clean shutdown loses
/// nothing committed. A lag is logged with its size (subscribers also see
/// the jump in `seq`).
pub async fn publish_changes(
    client: async_nats::Client,
    mut changes: Subscription,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut stop = std::pin::pin!(stop);
    loop {
        let received = tokio::select! {
            received = changes.recv() => received,
            () = &mut stop => break,
        };
        match received {
            Some(received) => publish(&client, received).await,
            None => break,
        }
    }
    while let Some(received) = changes.try_recv() {
        publish(&client, received).await;
    }
    if let Err(e) = client.flush().await {
        tracing::warn!(error = %e, "cannot flush the last changes to the bus");
    }
}

async fn publish(client: &async_nats::Client, received: Received) {
    match received {
        Received::Event(event) => {
            let body = serde_json::to_vec(&message(&event)).expect("JSON values serialise");
            if let Err(e) = client.publish(event.subject.as_str(), body.into()).await {
                tracing::warn!(seq = event.seq, subject = event.subject.as_str(), error = %e, "cannot publish a change on the bus; bus subscribers will see a gap in seq");
            }
        }
        Received::Missed(n) => {
            tracing::warn!(
                missed = n,
                "the bus publisher fell behind the change feed; {n} changes were not published"
            );
        }
    }
}

/// Cuts the bus connections of a user whose token was revoked, who was
/// deleted, or whose role changed (the new role applies on reconnect).
/// Connections act for the user, so revoking one token cuts the user's
/// other connections too; they reconnect with what still works.
pub async fn cut_revoked(handle: Handle, mut changes: Subscription) {
    while let Some(received) = changes.recv().await {
        let Received::Event(event) = received else {
            // Changes were missed, and any might be a revocation: without
            // knowing whose, the safe answer is to cut nobody silently.
            tracing::warn!("the bus revocation watcher fell behind the change feed; some revocations may not have cut bus connections");
            continue;
        };
        let user = match event.subject {
            Subject::TokenDeleted => event.payload["token"]["owner_id"].as_str(),
            Subject::UserDeleted | Subject::UserRoleChanged => event.payload["id"].as_str(),
            _ => None,
        };
        if let Some(user) = user {
            let closed = handle.disconnect(user);
            if closed > 0 {
                tracing::info!(
                    user,
                    closed,
                    subject = event.subject.as_str(),
                    "closed bus connections"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::overlaps;

    #[test]
    fn overlaps_follows_nats_wildcards() {
        for (a, b) in [
            (">", "flagbase.user.>"),
            ("flagbase.>", "flagbase.user.>"),
            ("flagbase.*.created", "flagbase.user.>"),
            ("*.user.deleted", "flagbase.user.>"),
            ("flagbase.user.created", "flagbase.user.>"),
            ("flagbase.flag.x", "flagbase.>"),
        ] {
            assert!(overlaps(a, b), "{a} ~ {b}");
        }
        for (a, b) in [
            ("flagbase.flag.>", "flagbase.user.>"),
            ("flagbase.user", "flagbase.user.>"),
            ("flagbase.*", "flagbase.user.>"),
            ("flagbase", "flagbase.>"),
            ("orders.>", "flagbase.>"),
            ("flagbasex.user.a", "flagbase.user.>"),
        ] {
            assert!(!overlaps(a, b), "{a} !~ {b}");
        }
    }
}
