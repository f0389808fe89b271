//! Gateway routes: the definition as admins write it (`RouteSpec`, from the
//! API or the config file), its validation, and the compiled, immutable
//! `RouteTable` the proxy reads with one atomic load per request.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hyper::header::HeaderValue;
use hyper::http::uri::{Authority, Scheme};
use hyper::Uri;
use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;
use crate::error::{Error, Result};
use crate::model::Role;

/// Every route lives under this prefix of the HTTP server.
pub const MOUNT: &str = "/gateway";

const MAX_PATH: usize = 256;
const MAX_TARGET: usize = 2048;
const MAX_ID: usize = 64;
const MAX_METHODS: usize = 16;
const MAX_VARIANTS: usize = 64;
const DEFAULT_TIMEOUT: HumanDuration = HumanDuration::from_secs(30);
/// A timeout beyond an hour no longer protects anything.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

fn yes() -> bool {
    true
}

fn default_timeout() -> HumanDuration {
    DEFAULT_TIMEOUT
}

/// A route as written: in a request body, in `gateway.routes`, and (without
/// its `id`) as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// Chosen by the server when absent on create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A prefix under `/gateway`; the longest matching one wins.
    pub path: String,
    /// Empty: every method.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag_key: Option<String>,
    /// Upstream base URL.
    pub target: String,
    /// Flag value or variant key → another upstream (canary, A/B).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variants: BTreeMap<String, String>,
    /// Used when the flag is off; without it an off flag answers 503.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_target: Option<String>,
    #[serde(default = "yes")]
    pub strip_prefix: bool,
    /// Until the upstream's response headers.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    #[serde(default)]
    pub forward_authorization: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_role: Option<Role>,
}

/// Where a route sends a request: an upstream, or a deployed function
/// (`function:<name>`), run as `ANY /functions/{name}/{path...}` runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Upstream(Upstream),
    Function(String),
}

impl Target {
    /// `function:<name>` (the name follows the function-name rules; whether
    /// the function exists is checked per request, so a route may be made
    /// before its function is deployed) or an upstream URL.
    pub fn parse(field: &str, text: &str) -> Result<Target> {
        match text.strip_prefix(FUNCTION_PREFIX) {
            Some(name) => {
                crate::functions::check_name(name).map_err(|_| {
                    Error::invalid(
                        field,
                        "function:<name> needs a function name of 1-128 letters, digits, '-', '_' or '.'",
                    )
                })?;
                Ok(Target::Function(name.to_string()))
            }
            None => Upstream::parse(field, text).map(Target::Upstream),
        }
    }
}

const FUNCTION_PREFIX: &str = "function:";

/// An upstream base URL, split once so each request only appends to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    pub scheme: Scheme,
    pub authority: Authority,
    /// Without a trailing slash; empty for the root.
    pub base_path: String,
    /// `authority` as the upstream's `Host` value, rendered once.
    pub host: HeaderValue,
}

impl Upstream {
    /// `http://host[:port][/base]`; no user info, query or fragment.
    pub fn parse(field: &str, text: &str) -> Result<Upstream> {
        let bad = |why: &str| Error::invalid(field, why);
        if text.len() > MAX_TARGET {
            return Err(bad("is longer than 2048 characters"));
        }
        let uri: Uri = text
            .parse()
            .map_err(|_| bad("is not a URL such as http://localhost:3000"))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| bad("needs a scheme: http://host:port"))?;
        if scheme != Scheme::HTTP {
            return Err(bad(if scheme == Scheme::HTTPS {
                "https upstreams are not supported yet; use http:// (TLS ends at the gateway's front proxy)"
            } else {
                "must be an http:// URL"
            }));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| bad("needs a host: http://host:port"))?;
        if authority.as_str().contains('@') {
            return Err(bad("must not carry user information"));
        }
        if authority.host().is_empty() {
            return Err(bad("needs a host: http://host:port"));
        }
        if uri.query().is_some() || text.contains('#') {
            return Err(bad("must not have a query or fragment"));
        }
        let base_path = uri.path().trim_end_matches('/').to_string();
        check_segments(&base_path).map_err(|why| bad(&why))?;
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|_| bad("has a host that is not a valid Host header"))?;
        Ok(Upstream {
            scheme,
            authority,
            base_path,
            host,
        })
    }
}

/// Rejects dot segments (plain or percent-encoded) and empty segments, so
/// neither a route nor a request can climb out of its prefix upstream.
pub fn check_segments(path: &str) -> std::result::Result<(), String> {
    // Most paths have neither a dot nor a percent sign: one scan answers.
    let suspect = memchr::memchr2(b'.', b'%', path.as_bytes()).is_some();
    if suspect && path.split('/').skip(1).any(is_dot_segment) {
        return Err("must not contain . or .. segments".into());
    }
    Ok(())
}

/// `.` or `..`, each dot plain or percent-encoded (`%2e`, `%2E`); checked
/// on every proxied request, so without allocating.
fn is_dot_segment(segment: &str) -> bool {
    let mut rest = segment.as_bytes();
    let mut dots = 0;
    while !rest.is_empty() {
        rest = match rest {
            [b'.', tail @ ..] => tail,
            [b'%', b'2', e, tail @ ..] if e.eq_ignore_ascii_case(&b'e') => tail,
            _ => return false,
        };
        dots += 1;
        if dots > 2 {
            return false;
        }
    }
    dots > 0
}

/// A validated route, ready to serve.
#[derive(Debug)]
pub struct Route {
    pub id: String,
    pub path: String,
    /// Upper-case; empty for every method.
    pub methods: Vec<String>,
    pub flag_key: Option<String>,
    pub target: Target,
    pub variants: BTreeMap<String, Target>,
    pub fallback: Option<Target>,
    pub strip_prefix: bool,
    pub timeout: Duration,
    pub forward_authorization: bool,
    pub require_role: Option<Role>,
}

impl Route {
    pub fn allows(&self, method: &str) -> bool {
        self.methods.is_empty() || self.methods.iter().any(|m| m == method)
    }
}

fn valid_id(id: &str) -> bool {
    (1..=MAX_ID).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Normalises `spec` in place (trailing slash, method case) and compiles it.
/// Whether the flag exists is the caller's check: it depends on the live
/// flags, not on the route.
pub fn compile(id: &str, spec: &mut RouteSpec) -> Result<Route> {
    if !valid_id(id) {
        return Err(Error::invalid(
            "id",
            "must be 1-64 letters, digits, '-', '_' or '.'",
        ));
    }
    let path = spec.path.trim_end_matches('/');
    let path = if path.is_empty() { "/" } else { path };
    if path.len() > MAX_PATH {
        return Err(Error::invalid("path", "is longer than 256 characters"));
    }
    if path != MOUNT && !path.starts_with("/gateway/") {
        return Err(Error::invalid(
            "path",
            "must be /gateway or start with /gateway/",
        ));
    }
    if !path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~' | b'%'))
        || path.contains("//")
    {
        return Err(Error::invalid(
            "path",
            "may contain only letters, digits, '/', '-', '_', '.', '~' and percent-escapes, without empty segments",
        ));
    }
    check_segments(path).map_err(|why| Error::invalid("path", why))?;
    spec.path = path.to_string();

    if spec.methods.len() > MAX_METHODS {
        return Err(Error::invalid("methods", "lists more than 16 methods"));
    }
    for method in &mut spec.methods {
        *method = method.to_ascii_uppercase();
        if method.is_empty() || method.len() > 16 || !method.bytes().all(|b| b.is_ascii_uppercase())
        {
            return Err(Error::invalid(
                "methods",
                format!("{method:?} is not a method"),
            ));
        }
    }
    spec.methods.sort();
    spec.methods.dedup();
    if let Some(key) = &spec.flag_key {
        if !flagbase_engine::is_valid_key(key) {
            return Err(Error::invalid("flag_key", "is not a valid flag key"));
        }
    }
    if spec.variants.len() > MAX_VARIANTS {
        return Err(Error::invalid("variants", "has more than 64 entries"));
    }
    if !spec.variants.is_empty() && spec.flag_key.is_none() {
        return Err(Error::invalid(
            "variants",
            "need a flag_key to choose between them",
        ));
    }
    if spec.fallback_target.is_some() && spec.flag_key.is_none() {
        return Err(Error::invalid(
            "fallback_target",
            "needs a flag_key (it is used when the flag is off)",
        ));
    }
    let mut variants = BTreeMap::new();
    for (key, target) in &spec.variants {
        if key.is_empty() || key.len() > 128 {
            return Err(Error::invalid("variants", "keys must be 1-128 characters"));
        }
        variants.insert(
            key.clone(),
            Target::parse(&format!("variants.{key}"), target)?,
        );
    }
    let timeout = spec.timeout.get();
    if timeout.is_zero() || timeout > MAX_TIMEOUT {
        return Err(Error::invalid(
            "timeout",
            "must be longer than 0 and at most 1h",
        ));
    }
    Ok(Route {
        id: id.to_string(),
        path: spec.path.clone(),
        methods: spec.methods.clone(),
        flag_key: spec.flag_key.clone(),
        target: Target::parse("target", &spec.target)?,
        variants,
        fallback: spec
            .fallback_target
            .as_deref()
            .map(|t| Target::parse("fallback_target", t))
            .transpose()?,
        strip_prefix: spec.strip_prefix,
        timeout,
        forward_authorization: spec.forward_authorization,
        require_role: spec.require_role,
    })
}

/// Every live route, longest path first, so the first prefix that matches
/// is the longest.
#[derive(Default)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
}

impl RouteTable {
    pub fn new(routes: impl IntoIterator<Item = Arc<Route>>) -> RouteTable {
        let mut routes: Vec<_> = routes.into_iter().collect();
        routes.sort_by(|a, b| b.path.len().cmp(&a.path.len()).then(a.path.cmp(&b.path)));
        RouteTable { routes }
    }

    /// The route for a request path: `/gateway/api` serves `/gateway/api`
    /// and `/gateway/api/x`, never `/gateway/apix`.
    pub fn find(&self, path: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| {
            path.strip_prefix(r.path.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }

    pub fn with(&self, route: Arc<Route>) -> RouteTable {
        let id = route.id.clone();
        let others = self.routes.iter().filter(|r| r.id != id).cloned();
        RouteTable::new(others.chain(std::iter::once(route)))
    }

    pub fn without(&self, id: &str) -> RouteTable {
        RouteTable::new(self.routes.iter().filter(|r| r.id != id).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn dot_segments_are_found_as_decoding_would_find_them(segment in "[.%2eEa/]{0,8}") {
            let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
            let expected = decoded == "." || decoded == "..";
            proptest::prop_assert_eq!(is_dot_segment(&segment), expected, "{}", segment);
        }
    }

    fn spec(path: &str, target: &str) -> RouteSpec {
        serde_json::from_value(serde_json::json!({"path": path, "target": target})).unwrap()
    }

    fn route(id: &str, path: &str) -> Arc<Route> {
        Arc::new(compile(id, &mut spec(path, "http://127.0.0.1:1")).unwrap())
    }

    #[test]
    fn the_longest_whole_segment_prefix_wins() {
        let table = RouteTable::new([
            route("a", "/gateway/api"),
            route("b", "/gateway/api/v2"),
            route("c", "/gateway"),
        ]);
        let found = |p: &str| table.find(p).map(|r| r.id.as_str());
        assert_eq!(found("/gateway/api"), Some("a"));
        assert_eq!(found("/gateway/api/x"), Some("a"));
        assert_eq!(found("/gateway/api/v2/x"), Some("b"));
        assert_eq!(found("/gateway/apix"), Some("c"));
        assert_eq!(found("/gateway/api/v20"), Some("a"));
        assert_eq!(found("/gatewayx"), None);
        let table = table.without("c");
        assert_eq!(table.find("/gateway/apix").map(|r| r.id.as_str()), None);
    }

    #[test]
    fn targets_must_be_plain_http_urls() {
        for (bad, why) in [
            ("ftp://x", "http"),
            ("localhost:80", "scheme"),
            ("not a url", "URL"),
            ("http://user:pw@host", "user"),
            ("http://host/a?b=c", "query"),
            ("http://host/a/../b", ".."),
            ("/relative", "scheme"),
            ("function:", "function"),
            ("function:../x", "function"),
            ("function:a/b", "function"),
        ] {
            let e = Target::parse("target", bad).unwrap_err().to_string();
            assert!(e.starts_with("target:") && e.contains(why), "{bad}: {e}");
        }
        let t = Upstream::parse("target", "http://127.0.0.1:8080/v1/").unwrap();
        assert_eq!(t.authority.as_str(), "127.0.0.1:8080");
        assert_eq!(t.base_path, "/v1");
        assert_eq!(Upstream::parse("t", "http://h").unwrap().base_path, "");
        assert_eq!(
            Target::parse("t", "function:resize").unwrap(),
            Target::Function("resize".into())
        );
    }

    #[test]
    fn paths_are_normalised_and_confined_to_the_mount() {
        let mut s = spec("/gateway/api/", "http://h");
        compile("r", &mut s).unwrap();
        assert_eq!(s.path, "/gateway/api");
        for bad in [
            "/api",
            "/gatewayx",
            "/gateway/../x",
            "/gateway/%2E%2e/x",
            "/gateway//x",
            "/gateway/a b",
        ] {
            let e = compile("r", &mut spec(bad, "http://h"))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("path:"), "{bad}: {e}");
        }
        let mut s = spec("/gateway/x", "http://h");
        s.methods = vec!["get".into(), "GET".into()];
        compile("r", &mut s).unwrap();
        assert_eq!(s.methods, ["GET"]);
    }
}
