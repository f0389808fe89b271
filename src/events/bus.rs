//! The embedded NATS-protocol bus wired to Flagbase: who may connect and do
//! what (`BusAuth`, over `Iam`), and the task that cuts a principal's
//! connections when its credentials are revoked (`cut_revoked`). Changes
//! reach it, as they would an external server, through `publisher`.
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

use subtle::ConstantTimeEq;

use flagbase_bus::codec::Connect;
use flagbase_bus::{Authorise, Handle, Permissions};

use super::{Received, Subject, Subscription};
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
        // A public client token only evaluates: flag events carry whole
        // definitions, so it never gets onto the bus.
        if caller.is_client() {
            return None;
        }
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
