//! Forwarding one request: pick the route (longest prefix), check the
//! caller's role, evaluate the route's flag for the caller and the request,
//! then stream the request to the chosen upstream and its response back,
//! with the header rules a user expects of nginx or Envoy (RFC 9110
//! hop-by-hop fields removed, `X-Forwarded-*` set, `X-Flagbase-*` only
//! from us, the caller's credentials kept unless the route forwards them).
//! Neither body is ever buffered whole; upgrades (WebSocket) are spliced.
//! A `function:<name>` target is run in process instead, as `/functions`
//! runs it (its body is read whole, up to `server.max_body_bytes`).

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use flagbase_engine::Evaluation;
use hyper::body::{Frame, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::context;
use super::h1_pool::Conns;
use super::net::Cidr;
use super::outgoing::{upstream_fields, FieldSink, Outgoing};
use super::pool::{Pool, SendError};
use super::route::{self, Route, Target, Upstream};
use super::Gateway;
use crate::config::GatewayConfig;
use crate::error::{Error, Result};
use crate::iam::Caller;
use crate::request_head::{text, RequestHead};

/// How long connecting to an upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a pooled upstream connection may sit unused.
const POOL_IDLE: Duration = Duration::from_secs(60);
/// Idle connections kept per upstream; more are closed once used.
const POOL_MAX_IDLE_PER_HOST: usize = 256;
/// How long a bucketing cookie lives in the browser (a year).
const COOKIE_MAX_AGE: u64 = 365 * 24 * 3600;

/// The headers that describe one hop only (RFC 9110 §7.6.1), plus the
/// legacy ones proxies still see. Names are constants: a `&str` name is
/// parsed and validated again on every lookup.
// A `static`: a `const` array is built and dropped at every use.
pub(super) static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Whether `name`, in any case, is one of `HOP_BY_HOP`: by length first,
/// since every field of every request and response is asked.
pub(super) fn hop_by_hop(name: &[u8]) -> bool {
    let is = |h: &HeaderName| name.eq_ignore_ascii_case(h.as_str().as_bytes());
    match name.len() {
        2 | 7 | 10 | 16 | 17 | 18 | 19 => HOP_BY_HOP.iter().any(is),
        _ => false,
    }
}

/// Names the rules also look up in a `RequestHead` (which takes `&str`).
pub(super) const XFF: &str = "x-forwarded-for";
pub(super) const XF_PROTO: &str = "x-forwarded-proto";
pub(super) const XF_HOST: &str = "x-forwarded-host";
pub(super) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static(XFF);
pub(super) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static(XF_PROTO);
pub(super) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static(XF_HOST);
pub(super) const X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
pub(super) const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
pub(super) const X_FLAGBASE_USER_ID: HeaderName = HeaderName::from_static("x-flagbase-user-id");
pub(super) const X_FLAGBASE_ROLE: HeaderName = HeaderName::from_static("x-flagbase-role");
pub(super) const X_FLAGBASE_FLAG: HeaderName = HeaderName::from_static("x-flagbase-flag");
pub(super) const X_FLAGBASE_VARIANT: HeaderName = HeaderName::from_static("x-flagbase-variant");

/// Why the gateway answers instead of the upstream, by whose fault:
/// the caller's (no route, method, path, body size, role), the flag's
/// (disabled route), or the upstream's (`Failed` carries 502/504 kinds).
#[derive(Debug)]
pub enum ProxyError {
    NoRoute,
    MethodNotAllowed,
    /// A dot segment that could climb out of the route's prefix upstream.
    BadPath,
    TooLarge {
        limit: u64,
    },
    /// The flag is off and the route has no fallback. A new anonymous
    /// visitor still gets their bucketing cookie, so the next request
    /// lands in the same bucket.
    Disabled {
        set_cookie: Option<HeaderValue>,
    },
    Failed(Error),
}

impl From<Error> for ProxyError {
    fn from(e: Error) -> Self {
        ProxyError::Failed(e)
    }
}

pub struct Proxy {
    pool: Pool,
    /// The upstream connections of the gateway's own HTTP/1 path.
    pub(super) conns: Conns,
    cookie_name: String,
    trusted: Vec<Cidr>,
    max_body_bytes: u64,
}

impl Proxy {
    pub fn new(config: &GatewayConfig) -> Result<Proxy> {
        let pool = Pool::new(POOL_MAX_IDLE_PER_HOST, POOL_IDLE, CONNECT_TIMEOUT);
        let trusted = config
            .trusted_proxies
            .iter()
            .map(|b| Cidr::parse(b).map_err(|e| Error::invalid("gateway.trusted_proxies", e)))
            .collect::<Result<_>>()?;
        Ok(Proxy {
            pool,
            conns: Conns::new(POOL_MAX_IDLE_PER_HOST, POOL_IDLE, CONNECT_TIMEOUT),
            cookie_name: config.cookie_name.clone(),
            trusted,
            max_body_bytes: config.max_body_bytes,
        })
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|b| b.contains(ip))
    }

    /// The client's address: the peer, or behind trusted proxies the
    /// right-most `X-Forwarded-For` entry that is not one of them.
    fn client_ip(&self, peer: IpAddr, head: &impl RequestHead) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        let entries = head
            .values(XFF)
            .filter_map(text)
            .flat_map(|v| v.split(','))
            .collect::<Vec<_>>();
        for entry in entries.into_iter().rev() {
            match entry.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip;
                    if !self.trusts(ip) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        client
    }
}

/// What was served, for the upstream's headers and the detector.
pub(super) struct Served {
    pub flag: String,
    /// The variant key, else the value as text (`true`, `beta`).
    pub variant: String,
}

/// The variant key, else the served value as text.
pub(super) fn label(eval: &Evaluation<'_>) -> String {
    if let Some(variant) = eval.variant {
        return variant.to_string();
    }
    match eval.value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The upstream for an evaluation, `None` when the route is off. A
/// disabled or missing flag is off; otherwise a `variants` entry for the
/// variant (or value) wins, then `false` is off, then the main target.
pub(super) fn choose<'r>(
    route: &'r Route,
    eval: &Evaluation<'_>,
    label: &str,
) -> Option<&'r Target> {
    match pick(route, eval, label)? {
        Pick::Main => Some(&route.target),
        Pick::Fallback => route.fallback.as_ref(),
        Pick::Variant => route.variants.get(label),
    }
}

/// Which target `choose` takes.
fn pick(route: &Route, eval: &Evaluation<'_>, label: &str) -> Option<Pick> {
    use flagbase_engine::Reason;
    let off = matches!(eval.reason, Reason::Disabled | Reason::Error);
    if !off && route.variants.contains_key(label) {
        return Some(Pick::Variant);
    }
    if off || *eval.value == Value::Bool(false) {
        return route.fallback.is_some().then_some(Pick::Fallback);
    }
    Some(Pick::Main)
}

/// What a route and its flag decided for one request, before anything is
/// sent or counted: both HTTP paths (hyper's and the gateway's own, `h1`)
/// start from it, so they route, refuse and rewrite alike.
pub(super) struct Decision {
    pub route: Arc<Route>,
    /// `None`: the flag is off and the route has no fallback.
    pick: Option<Pick>,
    pub served: Option<Served>,
    /// A bucketing cookie minted for a new anonymous visitor.
    pub minted: Option<String>,
    /// Whether the peer is a trusted proxy.
    pub trusted: bool,
    /// Whether the client reached the front proxy over https.
    pub https: bool,
}

/// Which of a route's targets serves.
#[derive(Clone, Copy)]
enum Pick {
    Main,
    Fallback,
    Variant,
}

impl Decision {
    /// The target chosen, `None` when the route is off for this request.
    pub fn target(&self) -> Option<&Target> {
        match self.pick? {
            Pick::Main => Some(&self.route.target),
            Pick::Fallback => self.route.fallback.as_ref(),
            Pick::Variant => self
                .served
                .as_ref()
                .and_then(|s| self.route.variants.get(&s.variant)),
        }
    }
}

impl Gateway {
    /// Routes one request: the route (longest prefix), the method, the
    /// caller's role, then the route's flag for the caller and the
    /// request. Counts nothing and sends nothing.
    pub(super) fn decide(
        &self,
        head: &impl RequestHead,
        caller: Option<&Caller>,
        peer: SocketAddr,
    ) -> std::result::Result<Decision, ProxyError> {
        let path = head.path();
        if route::check_segments(path).is_err() {
            return Err(ProxyError::BadPath);
        }
        let table = self.table();
        let route = table.find(path).ok_or(ProxyError::NoRoute)?.clone();
        drop(table);
        if !route.allows(head.method()) {
            return Err(ProxyError::MethodNotAllowed);
        }
        if let Some(needed) = route.require_role {
            match caller {
                None => {
                    return Err(Error::Unauthenticated(
                        "this route needs credentials: send Authorization: Bearer <token>".into(),
                    )
                    .into())
                }
                Some(caller) => caller.require(needed)?,
            }
        }
        let proxy = &self.proxy;
        let trusted = proxy.trusts(peer.ip());
        let https = trusted
            && head
                .first(XF_PROTO)
                .is_some_and(|v| v.eq_ignore_ascii_case(b"https"));
        let Some(key) = &route.flag_key else {
            return Ok(Decision {
                route,
                pick: Some(Pick::Main),
                served: None,
                minted: None,
                trusted,
                https,
            });
        };
        let mut minted = None;
        let bucket = if caller.is_some() {
            None
        } else {
            let sent = context::cookies(head)
                .find(|(name, _)| *name == proxy.cookie_name)
                .map(|(_, value)| value)
                .filter(|value| context::valid_bucket(value))
                .map(str::to_string);
            Some(sent.unwrap_or_else(|| {
                let bucket = context::new_bucket();
                minted = Some(bucket.clone());
                bucket
            }))
        };
        let ip = proxy.client_ip(peer.ip(), head);
        let live = self.flags.live();
        let reads = match live.snapshot.get(key) {
            Some(flag) => context::Reads::of(flag.spec()),
            // Evaluation answers "no such flag" whatever it is given.
            None => context::Reads::nothing(),
        };
        let ctx = context::build(head, caller, ip, bucket.as_deref(), reads);
        let eval = live.snapshot.evaluate(key, &ctx);
        let variant = label(&eval);
        let pick = pick(&route, &eval, &variant);
        let served = (eval.error_code.is_none()).then(|| Served {
            flag: key.clone(),
            variant,
        });
        Ok(Decision {
            route,
            pick,
            served,
            minted,
            trusted,
            https,
        })
    }

    /// Serves one request below `/gateway` through hyper.
    pub async fn serve(
        &self,
        req: Request<Body>,
        caller: Option<Caller>,
        peer: SocketAddr,
    ) -> std::result::Result<Response<Body>, ProxyError> {
        let (mut parts, body) = req.into_parts();
        let decision = self.decide(&parts, caller.as_ref(), peer)?;
        let proxy = &self.proxy;
        let route = &decision.route;
        let served = decision.served.as_ref();
        let set_cookie = || proxy.minted_cookie(&decision);
        let target = match decision.target() {
            None => {
                self.observe(served, false);
                return Err(ProxyError::Disabled {
                    set_cookie: set_cookie(),
                });
            }
            Some(Target::Function(name)) => {
                let call = FunctionCall {
                    route,
                    name,
                    caller,
                    served,
                    set_cookie: set_cookie(),
                };
                return self.run_function(call, parts, body).await;
            }
            Some(Target::Upstream(upstream)) => upstream,
        };

        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > proxy.max_body_bytes) {
            return Err(ProxyError::TooLarge {
                limit: proxy.max_body_bytes,
            });
        }
        let upgrade = upgrade_requested(&parts.headers);
        let client_upgrade = upgrade
            .is_some()
            .then(|| parts.extensions.remove::<hyper::upgrade::OnUpgrade>())
            .flatten();

        let uri = Uri::from_maybe_shared(Bytes::from(upstream_path(
            route,
            target,
            parts.uri.path(),
            parts.uri.query(),
        )))
        .map_err(|e| Error::internal(format!("upstream URI: {e}")))?;
        // Room for what the gateway adds: growing the map rehashes it.
        let mut headers = HeaderMap::with_capacity(parts.headers.len() + 12);
        proxy.upstream_fields(
            &parts,
            &decision,
            target,
            caller.as_ref(),
            peer,
            &mut headers,
        );
        if let Some(upgrade) = upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, upgrade);
        }

        let exceeded = Arc::new(AtomicBool::new(false));
        let mut upstream = Request::new(LimitedBody {
            inner: body,
            remaining: proxy.max_body_bytes,
            exceeded: exceeded.clone(),
        });
        *upstream.method_mut() = parts.method;
        *upstream.uri_mut() = uri;
        *upstream.version_mut() = Version::HTTP_11;
        *upstream.headers_mut() = headers;

        let sent = tokio::time::timeout(
            route.timeout,
            proxy.pool.send(&target.scheme, &target.authority, upstream),
        )
        .await;
        let mut response = match sent {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                if exceeded.load(Ordering::Relaxed) {
                    return Err(ProxyError::TooLarge {
                        limit: proxy.max_body_bytes,
                    });
                }
                let connect = matches!(e, SendError::Connect(_));
                return Err(self.upstream_failed(&decision, target, connect, &e));
            }
            Err(_) => return Err(self.upstream_timed_out(&decision, target)),
        };

        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            // Switching when the client never asked would leave it holding
            // a connection that speaks nobody knows what.
            let Some(client_upgrade) = client_upgrade else {
                return Err(self.upstream_failed(
                    &decision,
                    target,
                    false,
                    &"switching protocols without an upgrade",
                ));
            };
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            tokio::spawn(splice(client_upgrade, upstream_upgrade, route.id.clone()));
        } else {
            strip_hop_by_hop(response.headers_mut());
        }
        if let Some(cookie) = set_cookie() {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        self.observe(served, response.status().is_server_error());
        Ok(response.map(Body::new))
    }

    /// A 502 for an upstream that could not be reached (`connect`) or broke
    /// the exchange, counted as an error and logged with the upstream's
    /// name (which the body never carries).
    pub(super) fn upstream_failed(
        &self,
        decision: &Decision,
        target: &Upstream,
        connect: bool,
        error: &dyn std::fmt::Display,
    ) -> ProxyError {
        self.observe(decision.served.as_ref(), true);
        tracing::warn!(route = %decision.route.id, upstream = %target.authority, error = %error, "gateway upstream failed");
        let message = if connect {
            "the upstream is unreachable"
        } else {
            "the upstream broke the exchange"
        };
        Error::BadGateway(message.into()).into()
    }

    /// A 504 for an upstream that did not answer within the route's timeout.
    pub(super) fn upstream_timed_out(&self, decision: &Decision, target: &Upstream) -> ProxyError {
        self.observe(decision.served.as_ref(), true);
        tracing::warn!(route = %decision.route.id, upstream = %target.authority, timeout = ?decision.route.timeout, "gateway upstream timed out");
        Error::GatewayTimeout("the upstream did not answer in time".into()).into()
    }

    /// Runs a function target as `ANY /functions/{name}/{path...}` does:
    /// the caller's identity (functions need role user, so an anonymous
    /// caller gets 401), the server's body limit, the path below the
    /// route's prefix as `PATH_INFO`. A failed run (a 5xx of the module's
    /// or the runtime's) is an error event for the route's flag.
    async fn run_function(
        &self,
        call: FunctionCall<'_>,
        parts: hyper::http::request::Parts,
        body: Body,
    ) -> std::result::Result<Response<Body>, ProxyError> {
        let Some(caller) = call.caller else {
            return Err(Error::Unauthenticated(
                "functions need credentials: send Authorization: Bearer <token>".into(),
            )
            .into());
        };
        let limit = self.function_body_limit;
        let body = axum::body::to_bytes(body, limit)
            .await
            .map_err(|_| ProxyError::TooLarge {
                limit: limit as u64,
            })?;
        let path = parts.uri.path();
        let headers = parts
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let request = crate::functions::Call {
            method: parts.method.as_str().to_string(),
            path_info: path[call.route.path.len()..].to_string(),
            query: parts.uri.query().unwrap_or("").to_string(),
            headers,
            body: body.to_vec(),
        };
        match self.functions.invoke(&caller, call.name, request).await {
            Ok(reply) => {
                self.observe(call.served, reply.status >= 500);
                let mut response = reply.into_http();
                if let Some(cookie) = call.set_cookie {
                    response.headers_mut().append(header::SET_COOKIE, cookie);
                }
                Ok(response)
            }
            Err(e) => {
                let failed = matches!(
                    e,
                    Error::Failed(_)
                        | Error::Timeout(_)
                        | Error::Internal(_)
                        | Error::Unavailable(_)
                        | Error::Throttled { .. }
                );
                // A function that is missing or gated off for this caller
                // was not served: no exposure for it.
                if !matches!(e, Error::NotFound(_)) {
                    self.observe(call.served, failed);
                }
                Err(e.into())
            }
        }
    }

    /// Feeds the detector: an exposure for the variant served and, for an
    /// upstream 5xx or a gateway failure, an error event.
    /// Both are in-memory counter additions; a task flushes them.
    pub(super) fn observe(&self, served: Option<&Served>, failed: bool) {
        let Some(served) = served else {
            return;
        };
        self.metrics.exposure(&served.flag, &served.variant);
        if failed {
            self.metrics
                .record(&served.flag, &served.variant, crate::metrics::ERROR, 1.0);
        }
    }
}

/// What `run_function` needs of the request's routing.
struct FunctionCall<'a> {
    route: &'a Route,
    name: &'a str,
    caller: Option<Caller>,
    served: Option<&'a Served>,
    set_cookie: Option<HeaderValue>,
}

impl Proxy {
    fn cookie(&self, bucket: &str, secure: bool) -> Option<HeaderValue> {
        let secure = if secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{}={bucket}; Path=/; Max-Age={COOKIE_MAX_AGE}; HttpOnly; SameSite=Lax{secure}",
            self.cookie_name
        ))
        .ok()
    }
}

/// The `Upgrade` value when the client asks to switch protocols.
fn upgrade_requested(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    asks.then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
}

/// The target's base path, then the request path (without the route's
/// prefix when it strips it), then the query string unchanged: the
/// origin-form target the upstream is asked for (the pool picks the
/// connection from the target, and `Host` names it).
pub(super) fn upstream_path(
    route: &Route,
    target: &Upstream,
    path: &str,
    query: Option<&str>,
) -> String {
    let tail = if route.strip_prefix {
        &path[route.path.len()..]
    } else {
        path
    };
    let mut pq = String::with_capacity(target.base_path.len() + tail.len() + 64);
    pq.push_str(&target.base_path);
    pq.push_str(tail);
    if pq.is_empty() {
        pq.push('/');
    }
    if let Some(query) = query {
        pq.push('?');
        pq.push_str(query);
    }
    pq
}

impl Proxy {
    /// Writes the upstream request's header fields (`outgoing.rs` has the
    /// rules) into `out`.
    pub(super) fn upstream_fields(
        &self,
        head: &impl RequestHead,
        decision: &Decision,
        target: &Upstream,
        caller: Option<&Caller>,
        peer: SocketAddr,
        out: &mut impl FieldSink,
    ) {
        let route = &decision.route;
        let minted = decision
            .minted
            .as_ref()
            .map(|bucket| format!("{}={bucket}", self.cookie_name));
        upstream_fields(
            head,
            &Outgoing {
                trusted: decision.trusted,
                peer: peer.ip(),
                prefix: route.strip_prefix.then_some(route.path.as_str()),
                host: &target.host,
                forward_authorization: route.forward_authorization,
                caller,
                served: decision.served.as_ref(),
                minted: minted.as_deref(),
            },
            out,
        );
    }

    /// The `Set-Cookie` for a bucket minted by `decision`, if any.
    pub(super) fn minted_cookie(&self, decision: &Decision) -> Option<HeaderValue> {
        decision
            .minted
            .as_deref()
            .and_then(|b| self.cookie(b, decision.https))
    }
}

/// Removes the hop-by-hop fields of a response, including every field
/// `Connection` names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    // One pass to find them: most responses carry none, and removing an
    // absent name still hashes it.
    if headers.keys().any(|k| HOP_BY_HOP.contains(k)) {
        for name in &HOP_BY_HOP {
            headers.remove(name);
        }
    }
}

/// Relays bytes both ways between an upgraded client and upstream until
/// either side closes.
async fn splice(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    route: String,
) {
    let (client, upstream) = tokio::join!(client, upstream);
    match (client, upstream) {
        (Ok(client), Ok(upstream)) => {
            let (mut a, mut b) = (TokioIo::new(client), TokioIo::new(upstream));
            if let Err(e) = tokio::io::copy_bidirectional(&mut a, &mut b).await {
                tracing::debug!(%route, error = %e, "upgraded gateway connection ended");
            }
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::debug!(%route, error = %e, "gateway upgrade did not complete")
        }
    }
}

/// An error with its causes, for the log (hyper's top level says little).
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The client's body on its way upstream, cut off past the gateway limit
/// (a chunked body declares no length to refuse up front).
pub struct LimitedBody {
    inner: Body,
    remaining: u64,
    exceeded: Arc<AtomicBool>,
}

impl LimitedBody {
    /// An empty body under the same limit, for a request sent again.
    pub(super) fn empty(&self) -> LimitedBody {
        LimitedBody {
            inner: Body::empty(),
            remaining: self.remaining,
            exceeded: self.exceeded.clone(),
        }
    }
}

impl hyper::body::Body for LimitedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                let len = data.len() as u64;
                if len > self.remaining {
                    self.exceeded.store(true, Ordering::Relaxed);
                    return Poll::Ready(Some(Err(axum::Error::new(
                        "request body over gateway.max_body_bytes",
                    ))));
                }
                self.remaining -= len;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hop_by_hop_name_is_caught_in_any_case() {
        for name in &HOP_BY_HOP {
            assert!(hop_by_hop(name.as_str().as_bytes()), "{name}");
            assert!(hop_by_hop(name.as_str().to_ascii_uppercase().as_bytes()));
        }
        for kept in ["content-type", "tee", "trailers", "x-upgrade", ""] {
            assert!(!hop_by_hop(kept.as_bytes()), "{kept}");
        }
    }

    #[test]
    fn hop_by_hop_fields_go_including_those_connection_names() {
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("connection", "keep-alive, x-secret-hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("x-kept", "yes"),
        ] {
            h.insert(n, HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-kept"));
    }
}
