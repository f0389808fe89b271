//! What a gateway request is evaluated for: the caller under the context
//! rule of the API (a person's credential names them; anonymous callers
//! are role `anonymous`, keyed by their sticky bucketing cookie) plus the
//! request itself: `method`, `path`, `ip`, `header.<name>`, `query.<name>`
//! and `cookie.<name>`.

use std::net::IpAddr;

use flagbase_engine::{Context, FlagSpec};
use rand::RngCore;

use crate::iam::Caller;
use crate::request_head::{text, RequestHead};

/// The role anonymous callers have in rules and in `X-Flagbase-Role`.
pub const ANONYMOUS: &str = "anonymous";

/// Request attributes beyond these counts are left out of the context
/// (hyper already caps headers at 100).
const MAX_QUERY: usize = 64;
const MAX_COOKIES: usize = 64;

/// Headers that carry credentials: never offered to rules.
const SECRET_HEADERS: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "cookie",
];

pub fn valid_cookie_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// A bucketing id we could have issued (or an SDK could have set): short,
/// URL-safe, long enough not to collide.
pub fn valid_bucket(value: &str) -> bool {
    (8..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// 128 random bits, URL-safe base64: a new anonymous visitor's bucket.
pub fn new_bucket() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Every `name=value` pair of the request's `Cookie` headers.
pub fn cookies(head: &impl RequestHead) -> impl Iterator<Item = (&str, &str)> {
    head.values("cookie")
        .filter_map(text)
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            Some((name.trim(), value.trim().trim_matches('"')))
        })
}

/// Which request attributes an evaluation can read. Turning every header,
/// query parameter and cookie into an owned attribute costs more than the
/// rest of the request; a flag reads only the attributes its rules and
/// `bucket_by` name, so the others are left out and every rule still sees
/// exactly what it would have seen.
#[derive(Clone, Copy)]
pub struct Reads<'a> {
    /// `None`: everything (no flag to ask) unless `nothing`.
    flag: Option<&'a FlagSpec>,
    nothing: bool,
}

impl<'a> Reads<'a> {
    pub fn of(flag: &'a FlagSpec) -> Self {
        Reads {
            flag: Some(flag),
            nothing: false,
        }
    }

    /// For a flag that does not exist: no rule reads anything.
    pub fn nothing() -> Self {
        Reads {
            flag: None,
            nothing: true,
        }
    }

    #[cfg(test)]
    pub fn all() -> Self {
        Reads {
            flag: None,
            nothing: false,
        }
    }

    fn names(&self) -> impl Iterator<Item = &'a str> {
        self.flag.into_iter().flat_map(|flag| {
            let rules = flag.rules.iter().flat_map(|rule| {
                let inline = rule.attribute.as_deref();
                let listed = rule
                    .conditions
                    .iter()
                    .flatten()
                    .map(|c| c.attribute.as_str());
                inline.into_iter().chain(listed)
            });
            rules.chain(flag.bucket_by.as_deref())
        })
    }

    /// Whether an attribute `prefix` + `name` may be read.
    fn reads(&self, prefix: &str, name: &str) -> bool {
        (self.flag.is_none() && !self.nothing)
            || self
                .names()
                .any(|attr| attr.strip_prefix(prefix).is_some_and(|rest| rest == name))
    }

    /// Which of the attributes every request has may be read, in one pass
    /// over the names (asking `reads` for each would walk them each time).
    fn wants(&self) -> Wants {
        if self.flag.is_none() && !self.nothing {
            return Wants {
                method: true,
                path: true,
                ip: true,
                user_id: true,
                email: true,
                role: true,
                header: true,
                query: true,
                cookie: true,
            };
        }
        let mut wants = Wants::default();
        for attr in self.names() {
            match attr {
                "method" => wants.method = true,
                "path" => wants.path = true,
                "ip" => wants.ip = true,
                "userId" => wants.user_id = true,
                "email" => wants.email = true,
                "role" => wants.role = true,
                _ if attr.starts_with("header.") => wants.header = true,
                _ if attr.starts_with("query.") => wants.query = true,
                _ if attr.starts_with("cookie.") => wants.cookie = true,
                _ => {}
            }
        }
        wants
    }
}

/// What `Reads::wants` found: each flag says whether the attribute (or,
/// for `header`, `query` and `cookie`, any attribute with that prefix) is read.
#[derive(Default)]
struct Wants {
    method: bool,
    path: bool,
    ip: bool,
    user_id: bool,
    email: bool,
    role: bool,
    header: bool,
    query: bool,
    cookie: bool,
}

/// The evaluation context of one request, holding the attributes `reads`
/// allows. `bucket` is the anonymous caller's targeting key.
pub fn build(
    head: &impl RequestHead,
    caller: Option<&Caller>,
    ip: IpAddr,
    bucket: Option<&str>,
    reads: Reads<'_>,
) -> Context {
    let mut ctx = match (caller, bucket) {
        (Some(caller), _) => Context::with_targeting_key(caller.user.id.clone()),
        (None, Some(bucket)) => Context::with_targeting_key(bucket),
        (None, None) => Context::new(),
    };
    let wants = reads.wants();
    if wants.method {
        ctx.insert("method", head.method());
    }
    if wants.path {
        ctx.insert("path", head.path());
    }
    if wants.ip {
        ctx.insert("ip", ip.to_string());
    }
    if wants.header {
        for (name, value) in head.fields() {
            // Attributes name fields in lower case, whatever the client sent.
            let name = name.to_ascii_lowercase();
            if SECRET_HEADERS.contains(&name.as_str()) || !reads.reads("header.", &name) {
                continue;
            }
            if let Some(value) = text(value) {
                let key = format!("header.{name}");
                // The first of repeated headers; rules see one value.
                ctx.attributes
                    .entry(key)
                    .or_insert_with(|| value.to_string().into());
            }
        }
    }
    if let Some(query) = head.query().filter(|_| wants.query) {
        for (name, value) in form_urlencoded::parse(query.as_bytes()).take(MAX_QUERY) {
            if reads.reads("query.", &name) {
                ctx.attributes
                    .entry(format!("query.{name}"))
                    .or_insert_with(|| value.into_owned().into());
            }
        }
    }
    if wants.cookie {
        for (name, value) in cookies(head)
            .filter(|(name, _)| *name != crate::iam::browser::COOKIE_NAME)
            .take(MAX_COOKIES)
        {
            if reads.reads("cookie.", name) {
                ctx.attributes
                    .entry(format!("cookie.{name}"))
                    .or_insert_with(|| value.to_string().into());
            }
        }
    }
    // Identity comes last, from the credential: a header or cookie cannot
    // claim it. (The targeting key above is the user id for the engine's
    // own use: targeted users, rollouts.)
    match caller {
        Some(caller) => {
            if wants.user_id {
                ctx.insert("userId", caller.user.id.clone());
            }
            if wants.email {
                ctx.insert("email", caller.user.email.clone());
            }
            if wants.role {
                ctx.insert("role", caller.role.as_str());
            }
        }
        None if wants.role => ctx.insert("role", ANONYMOUS),
        None => {}
    }
    ctx
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::http::request::Parts;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut req = hyper::Request::get(uri);
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn the_request_becomes_attributes_and_identity_cannot_be_spoofed() {
        let p = parts(
            "/gateway/api/x?beta=yes&role=admin",
            &[
                ("x-canary", "1"),
                ("cookie", "a=1; beta=yes"),
                ("authorization", "Bearer secret"),
                ("role", "admin"),
            ],
        );
        let ctx = build(
            &p,
            None,
            "10.0.0.9".parse().unwrap(),
            Some("bucket-123"),
            Reads::all(),
        );
        let get = |k: &str| {
            ctx.attribute(k)
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        assert_eq!(ctx.targeting_key.as_deref(), Some("bucket-123"));
        assert_eq!(get("method").as_deref(), Some("GET"));
        assert_eq!(get("path").as_deref(), Some("/gateway/api/x"));
        assert_eq!(get("ip").as_deref(), Some("10.0.0.9"));
        assert_eq!(get("header.x-canary").as_deref(), Some("1"));
        assert_eq!(get("query.beta").as_deref(), Some("yes"));
        assert_eq!(get("cookie.beta").as_deref(), Some("yes"));
        assert_eq!(get("role").as_deref(), Some(ANONYMOUS));
        assert_eq!(get("header.authorization"), None);
        assert_eq!(get("header.cookie"), None);
    }

    #[test]
    fn only_the_attributes_a_flag_reads_are_built_and_they_are_unchanged() {
        let flag: FlagSpec = serde_json::from_value(serde_json::json!({
            "key": "f", "enabled": true, "default_value": false,
            "bucket_by": "cookie.beta",
            "rules": [
                {"attribute": "header.x-canary", "operator": "equals", "value": "1", "variant": true},
                {"conditions": [{"attribute": "query.beta", "operator": "exists"}], "variant": true}
            ]
        }))
        .unwrap();
        let p = parts(
            "/gateway/x?beta=yes&other=1",
            &[
                ("x-canary", "1"),
                ("x-other", "2"),
                ("cookie", "a=1; beta=b"),
            ],
        );
        let ip = "10.0.0.9".parse().unwrap();
        let ctx = build(&p, None, ip, Some("bucket-123"), Reads::of(&flag));
        let all = build(&p, None, ip, Some("bucket-123"), Reads::all());
        for read in ["header.x-canary", "query.beta", "cookie.beta"] {
            assert!(ctx.attribute(read).is_some(), "{read}");
            assert_eq!(ctx.attribute(read), all.attribute(read), "{read}");
        }
        for unread in [
            "header.x-other",
            "query.other",
            "cookie.a",
            "method",
            "path",
            "ip",
            "role",
        ] {
            assert!(ctx.attribute(unread).is_none(), "{unread}");
            assert!(all.attribute(unread).is_some(), "{unread}");
        }
        // The caller's identity the same way: only what a rule names.
        let caller = crate::iam::Caller {
            user: crate::model::User {
                id: "u-1".into(),
                email: "a@example.com".into(),
                password_hash: String::new(),
                role: crate::model::Role::Developer,
                created_at: chrono::Utc::now(),
            },
            role: crate::model::Role::Developer,
            credential: crate::iam::Credential::Session {
                expires_at: chrono::Utc::now(),
            },
        };
        let by_email: FlagSpec = serde_json::from_value(serde_json::json!({
            "key": "g", "enabled": true, "default_value": false,
            "rules": [{"attribute": "email", "operator": "equals", "value": "a@example.com", "variant": true}]
        }))
        .unwrap();
        let ctx = build(&p, Some(&caller), ip, None, Reads::of(&by_email));
        let all = build(&p, Some(&caller), ip, None, Reads::all());
        assert_eq!(ctx.targeting_key.as_deref(), Some("u-1"));
        assert_eq!(ctx.attribute("email"), all.attribute("email"));
        assert!(ctx.attribute("email").is_some());
        for unread in ["userId", "role"] {
            assert!(ctx.attribute(unread).is_none(), "{unread}");
            assert!(all.attribute(unread).is_some(), "{unread}");
        }
        let none = build(&p, None, ip, None, Reads::nothing());
        assert!(none.attribute("header.x-canary").is_none());
    }

    #[test]
    fn buckets_are_url_safe_and_distinct() {
        let (a, b) = (new_bucket(), new_bucket());
        assert!(valid_bucket(&a) && valid_bucket(&b));
        assert_ne!(a, b);
        assert!(!valid_bucket("short") && !valid_bucket("has space in it"));
    }

    #[test]
    fn the_console_session_cookie_never_reaches_rules_or_upstreams() {
        let p = parts(
            "/gateway/x",
            &[
                ("cookie", "a=1; flagbase_session=secret; b=2"),
                ("cookie", "flagbase_session=x"),
            ],
        );
        let ctx = build(&p, None, "127.0.0.1".parse().unwrap(), None, Reads::all());
        assert!(ctx.attribute("cookie.flagbase_session").is_none());
        assert_eq!(ctx.attribute("cookie.b"), Some(&serde_json::json!("2")));
        // What upstreams receive: `outgoing.rs`.
    }
}
