//! The evaluation context rule, written once and used by every evaluating
//! route (REST, OFREP, and the gateway later):
//!
//! - A person's session (JWT) evaluates for that person. `targetingKey` and
//!   `userId` are the user's id, `email` and `role` come from the
//!   credential; the request may add other attributes but never override
//!   those four (`?role=admin` does not buy the admins' variant).
//!   Developers and admins may instead preview another context with an
//!   explicit `as` object; a preview is marked so it is recorded nowhere as
//!   an exposure.
//! - A machine token (an API token of either kind) evaluates for the
//!   context it supplies, as a backend evaluating for its users needs:
//!   `targetingKey`/`userId` are taken as sent.

use flagbase_engine::Context;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::iam::Caller;
use crate::model::Role;

/// Attributes that describe a person and come from their credential.
pub const IDENTITY: [&str; 4] = ["targetingKey", "userId", "email", "role"];

/// The context to evaluate and whether it is a preview.
#[derive(Debug, Clone)]
pub struct Evaluating {
    pub context: Context,
    /// An `as` preview by a developer or admin: not an exposure of anyone.
    pub preview: bool,
}

/// Applies the rule to what the request supplied (`supplied`, and the
/// optional `as` object `preview`).
pub fn resolve(caller: &Caller, supplied: Context, preview: Option<Context>) -> Result<Evaluating> {
    if caller.is_machine() {
        if preview.is_some() {
            return Err(Error::invalid(
                "as",
                "a machine token evaluates for the context it supplies; send it as `context`",
            ));
        }
        return Ok(Evaluating {
            context: supplied,
            preview: false,
        });
    }
    if let Some(preview) = preview {
        caller.require(Role::Developer).map_err(|_| {
            Error::Forbidden(format!(
                "previewing another context (`as`) needs the developer role; the caller has {}",
                caller.role
            ))
        })?;
        return Ok(Evaluating {
            context: preview,
            preview: true,
        });
    }
    let mut context = supplied;
    for name in IDENTITY {
        context.attributes.remove(name);
    }
    context.targeting_key = Some(caller.user.id.clone());
    context.insert("userId", caller.user.id.clone());
    context.insert("email", caller.user.email.clone());
    context.insert("role", caller.role.as_str());
    Ok(Evaluating {
        context,
        preview: false,
    })
}

/// A context from `name=value` pairs (query parameters): every value a string.
pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Context {
    let map = pairs
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    Context::from_json(Value::Object(map)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iam::Credential;
    use crate::model::{TokenKind, User};

    fn caller(role: Role, credential: Credential) -> Caller {
        Caller {
            user: User {
                id: "u-1".into(),
                email: "ada@example.com".into(),
                password_hash: String::new(),
                role,
                created_at: chrono::Utc::now(),
            },
            role,
            credential,
        }
    }

    fn token(kind: TokenKind) -> Credential {
        Credential::ApiToken {
            id: "t".into(),
            expires_at: None,
            kind,
        }
    }

    fn supplied() -> Context {
        Context::with_targeting_key("end-user-7")
            .with("role", "admin")
            .with("plan", "pro")
    }

    #[test]
    fn a_session_evaluates_for_its_person_whatever_it_supplies() {
        let c = caller(
            Role::User,
            Credential::Session {
                expires_at: chrono::DateTime::<chrono::Utc>::MAX_UTC,
            },
        );
        let e = resolve(&c, supplied(), None).unwrap();
        assert_eq!(e.context.user_id(), Some("u-1"));
        assert_eq!(e.context.attribute("role"), Some(&Value::from("user")));
        assert_eq!(
            e.context.attribute("email"),
            Some(&Value::from("ada@example.com"))
        );
        assert_eq!(e.context.attribute("plan"), Some(&Value::from("pro")));
        assert!(!e.preview);
    }

    #[test]
    fn machine_tokens_of_both_kinds_evaluate_for_the_supplied_context() {
        for kind in [TokenKind::Server, TokenKind::Client] {
            let c = caller(Role::User, token(kind));
            let e = resolve(&c, supplied(), None).unwrap();
            assert_eq!(e.context.user_id(), Some("end-user-7"));
            assert_eq!(e.context.attribute("role"), Some(&Value::from("admin")));
            assert!(resolve(&c, supplied(), Some(Context::new())).is_err());
        }
    }

    #[test]
    fn only_developers_and_admins_preview_with_as() {
        let user = caller(
            Role::User,
            Credential::Session {
                expires_at: chrono::DateTime::<chrono::Utc>::MAX_UTC,
            },
        );
        assert!(matches!(
            resolve(&user, Context::new(), Some(supplied())),
            Err(Error::Forbidden(_))
        ));
        let dev = caller(
            Role::Developer,
            Credential::Session {
                expires_at: chrono::DateTime::<chrono::Utc>::MAX_UTC,
            },
        );
        let e = resolve(&dev, Context::new(), Some(supplied())).unwrap();
        assert_eq!(e.context.user_id(), Some("end-user-7"));
        assert!(e.preview);
    }
}
