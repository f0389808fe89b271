//! The header fields of the request an upstream receives: one set of rules,
//! written once, read as a function of the client's request (nothing is
//! edited in place), and written into either of two sinks: a `HeaderMap`
//! for hyper's client, or the head's bytes for the gateway's own HTTP/1
//! path. The rules:
//!
//! - hop-by-hop fields go (RFC 9110 §7.6.1), with every field `Connection`
//!   names;
//! - `X-Forwarded-For` is the peer, appended to a trusted proxy's list;
//!   `Forwarded`, `X-Forwarded-Proto` and `-Host` stand only when a trusted
//!   proxy sent them, else `-Proto` is `http` and `-Host` the client's
//!   `Host`; `X-Forwarded-Prefix` is the route's prefix when it strips it;
//!   `Host` names the upstream;
//! - the caller's `Authorization` and `X-API-Key` go unless the route
//!   forwards them, and the console's session cookie always goes;
//! - client-sent `X-Flagbase-*` fields go, and ours name the caller, the
//!   flag and the variant served;
//! - a bucket minted for an anonymous visitor joins `Cookie`, so the
//!   upstream sees it from the first request on.

use std::net::IpAddr;

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::context::{self, ANONYMOUS};
use super::proxy::{
    hop_by_hop, Served, XFF, XF_HOST, XF_PROTO, X_API_KEY, X_FLAGBASE_FLAG, X_FLAGBASE_ROLE,
    X_FLAGBASE_USER_ID, X_FLAGBASE_VARIANT, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PREFIX,
    X_FORWARDED_PROTO,
};
use crate::iam::Caller;
use crate::request_head::{text, RequestHead};

/// Where the upstream request's fields go.
pub(super) trait FieldSink {
    /// A field of the client's request, passed on as it came.
    fn pass(&mut self, name: &str, value: &[u8]);
    /// A field the gateway sets. A value that is not a valid field value
    /// (a control character from a user id, say) is left out, by both sinks.
    fn set(&mut self, name: &HeaderName, value: &[u8]);
}

impl FieldSink for HeaderMap {
    fn pass(&mut self, name: &str, value: &[u8]) {
        // Both were valid in the request this path parsed.
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            self.append(name, value);
        }
    }

    fn set(&mut self, name: &HeaderName, value: &[u8]) {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            self.append(name.clone(), value);
        }
    }
}

/// The head's bytes: `name: value` lines.
impl FieldSink for Vec<u8> {
    fn pass(&mut self, name: &str, value: &[u8]) {
        super::h1::field(self, name.as_bytes(), value);
    }

    fn set(&mut self, name: &HeaderName, value: &[u8]) {
        if valid_value(value) {
            super::h1::field(self, name.as_str().as_bytes(), value);
        }
    }
}

/// What `HeaderValue::from_bytes` accepts: visible ASCII, spaces, tabs
/// and obs-text, no control characters.
fn valid_value(value: &[u8]) -> bool {
    // A fold, not `all`: no early exit, so many bytes per instruction.
    value.iter().fold(true, |ok, &b| {
        ok & (((b >= 32) & (b != 127)) | (b == b'\t'))
    })
}

/// What the fields depend on besides the client's request.
pub(super) struct Outgoing<'a> {
    /// The peer is a trusted proxy, whose forwarding fields stand.
    pub trusted: bool,
    pub peer: IpAddr,
    /// `X-Forwarded-Prefix`: the route's prefix, when it strips it.
    pub prefix: Option<&'a str>,
    /// The upstream's `Host`.
    pub host: &'a HeaderValue,
    pub forward_authorization: bool,
    pub caller: Option<&'a Caller>,
    pub served: Option<&'a Served>,
    /// `name=bucket` for a bucket minted by this request.
    pub minted: Option<&'a str>,
}

/// Writes the upstream request's fields for the client's request `head`.
pub(super) fn upstream_fields(head: &impl RequestHead, o: &Outgoing<'_>, out: &mut impl FieldSink) {
    // Fields `Connection` names are hop-by-hop too; rare, so only then a
    // list. Everything below reads the request as if they were gone.
    let named: Vec<&str> = head
        .values("connection")
        .filter_map(text)
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    let is_named = |name: &str| named.iter().any(|n| n.eq_ignore_ascii_case(name));
    let is = |name: &str, wanted: &HeaderName| name.eq_ignore_ascii_case(wanted.as_str());
    let present = |name: &'static str| !is_named(name) && head.has(name);
    let proto_kept = o.trusted
        && !is_named(X_FORWARDED_PROTO.as_str())
        && head
            .first(XF_PROTO)
            .is_some_and(|v| matches!(v, b"http" | b"https"));
    let host_kept = o.trusted && present(XF_HOST);
    let cookies_sent = !is_named("cookie");
    let session =
        cookies_sent && context::cookies(head).any(|(n, _)| n == crate::iam::browser::COOKIE_NAME);
    let cookie_rewritten = session || o.minted.is_some();

    for (name, value) in head.fields() {
        let dropped = hop_by_hop(name.as_bytes())
            || is_named(name)
            || is(name, &header::HOST)
            || is(name, &X_FORWARDED_FOR)
            || is(name, &X_FORWARDED_PREFIX)
            || (is(name, &header::FORWARDED) && !o.trusted)
            || (is(name, &X_FORWARDED_PROTO) && !proto_kept)
            || (is(name, &X_FORWARDED_HOST) && !host_kept)
            || (!o.forward_authorization
                && (is(name, &header::AUTHORIZATION) || is(name, &X_API_KEY)))
            || (is(name, &header::COOKIE) && cookie_rewritten)
            || name
                .get(..11)
                .is_some_and(|p| p.eq_ignore_ascii_case("x-flagbase-"));
        if !dropped {
            out.pass(name, value);
        }
    }

    // An address is at most 45 bytes as text.
    let mut xff = Vec::with_capacity(64);
    if o.trusted && !is_named(X_FORWARDED_FOR.as_str()) {
        for earlier in head.values(XFF).filter_map(text) {
            xff.extend_from_slice(earlier.as_bytes());
            xff.extend_from_slice(b", ");
        }
    }
    write_ip(&mut xff, o.peer.to_canonical());
    out.set(&X_FORWARDED_FOR, &xff);
    if !proto_kept {
        out.set(&X_FORWARDED_PROTO, b"http");
    }
    if !host_kept {
        // The client's own `Host`, even when `Connection` named it.
        if let Some(host) = head.first("host") {
            out.set(&X_FORWARDED_HOST, host);
        }
    }
    if let Some(prefix) = o.prefix {
        out.set(&X_FORWARDED_PREFIX, prefix.as_bytes());
    }
    out.set(&header::HOST, o.host.as_bytes());

    if cookie_rewritten {
        let mut cookie = Vec::new();
        let mut add = |pair: &[u8]| {
            if !cookie.is_empty() {
                cookie.extend_from_slice(b"; ");
            }
            cookie.extend_from_slice(pair);
        };
        let lines = head.values("cookie").filter(|_| cookies_sent);
        if session {
            // Pair by pair, without the session's.
            let name = crate::iam::browser::COOKIE_NAME;
            lines
                .filter_map(text)
                .flat_map(|line| line.split(';'))
                .map(str::trim)
                .filter(|pair| !pair.is_empty())
                .filter(|pair| pair.split_once('=').is_none_or(|(n, _)| n.trim() != name))
                .for_each(|pair| add(pair.as_bytes()));
        } else {
            lines.for_each(&mut add);
        }
        if let Some(pair) = o.minted {
            add(pair.as_bytes());
        }
        if !cookie.is_empty() {
            out.set(&header::COOKIE, &cookie);
        }
    }

    match o.caller {
        Some(caller) => {
            out.set(&X_FLAGBASE_USER_ID, caller.user.id.as_bytes());
            out.set(&X_FLAGBASE_ROLE, caller.role.as_str().as_bytes());
        }
        None => out.set(&X_FLAGBASE_ROLE, ANONYMOUS.as_bytes()),
    }
    if let Some(served) = o.served {
        out.set(&X_FLAGBASE_FLAG, served.flag.as_bytes());
        out.set(&X_FLAGBASE_VARIANT, served.variant.as_bytes());
    }
}

/// An address as `Display` writes it; IPv4, what nearly every peer on a
/// loopback or a private network is, without the formatting machinery
/// (which costs more than the rest of these rules).
fn write_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
        }
        IpAddr::V6(_) => {
            use std::io::Write;
            write!(out, "{ip}").expect("writing to a Vec");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Fields<'a> = &'a [(&'a str, &'a str)];

    /// The fields upstreams get for a request with `fields`, as sorted
    /// `name: value` lines (names in lower case): the same whichever head
    /// (hyper's `Parts`, the own path's `RawHead`) and whichever sink.
    fn upstream(fields: Fields<'_>, o: &Outgoing<'_>) -> Vec<String> {
        let mut builder = hyper::Request::get("/gateway/app/x");
        let mut raw = String::from("GET /gateway/app/x HTTP/1.1\r\n");
        for (n, v) in fields {
            builder = builder.header(*n, *v);
            raw.push_str(&format!("{n}: {v}\r\n"));
        }
        raw.push_str("\r\n");
        let parts = builder.body(()).unwrap().into_parts().0;
        let mut found = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut found);
        assert!(req.parse(raw.as_bytes()).unwrap().is_complete());
        let raw_head = crate::request_head::RawHead {
            method: "GET",
            path: "/gateway/app/x",
            query: None,
            fields: req.headers,
        };
        let outputs = [
            via_map(&parts, o),
            via_bytes(&parts, o),
            via_map(&raw_head, o),
            via_bytes(&raw_head, o),
        ];
        for other in &outputs[1..] {
            assert_eq!(&outputs[0], other);
        }
        outputs[0].clone()
    }

    fn via_map(head: &impl RequestHead, o: &Outgoing<'_>) -> Vec<String> {
        let mut map = HeaderMap::new();
        upstream_fields(head, o, &mut map);
        sorted(
            map.iter()
                .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap())),
        )
    }

    fn via_bytes(head: &impl RequestHead, o: &Outgoing<'_>) -> Vec<String> {
        let mut bytes = Vec::new();
        upstream_fields(head, o, &mut bytes);
        let text = String::from_utf8(bytes).unwrap();
        sorted(text.split("\r\n").filter(|l| !l.is_empty()).map(|l| {
            let (name, value) = l.split_once(": ").unwrap();
            format!("{}: {value}", name.to_ascii_lowercase())
        }))
    }

    fn sorted(lines: impl Iterator<Item = String>) -> Vec<String> {
        let mut lines: Vec<String> = lines.collect();
        lines.sort();
        lines
    }

    fn outgoing<'a>(host: &'a HeaderValue, served: Option<&'a Served>) -> Outgoing<'a> {
        Outgoing {
            trusted: false,
            peer: "10.0.0.7".parse().unwrap(),
            prefix: Some("/gateway/app"),
            host,
            forward_authorization: false,
            caller: None,
            served,
            minted: None,
        }
    }

    #[test]
    fn an_untrusted_request_gets_our_forwarding_and_identity_fields_only() {
        let host = HeaderValue::from_static("app.internal:8080");
        let served = Served {
            flag: "canary".into(),
            variant: "on".into(),
        };
        let h: Fields = &[
            ("host", "shop.example"),
            ("connection", "keep-alive, x-secret-hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("te", "trailers"),
            ("authorization", "Bearer t"),
            ("x-api-key", "k"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-prefix", "/evil"),
            ("forwarded", "for=6.6.6.6"),
            ("x-flagbase-role", "admin"),
            ("X-Flagbase-User-Id", "root"),
            ("cookie", "a=1; flagbase_session=secret; b=2"),
            ("cookie", "flagbase_session=x"),
            ("accept", "text/html"),
            ("accept", "*/*"),
        ];
        let map = upstream(h, &outgoing(&host, Some(&served)));
        assert_eq!(
            map,
            [
                "accept: */*",
                "accept: text/html",
                "cookie: a=1; b=2",
                "host: app.internal:8080",
                "x-flagbase-flag: canary",
                "x-flagbase-role: anonymous",
                "x-flagbase-variant: on",
                "x-forwarded-for: 10.0.0.7",
                "x-forwarded-host: shop.example",
                "x-forwarded-prefix: /gateway/app",
                "x-forwarded-proto: http",
            ]
        );
    }

    #[test]
    fn a_trusted_proxy_keeps_its_forwarding_fields_and_a_minted_bucket_joins_the_cookies() {
        let host = HeaderValue::from_static("app.internal");
        let h: Fields = &[
            ("host", "shop.example"),
            ("x-forwarded-for", "1.1.1.1, 2.2.2.2"),
            ("x-forwarded-for", "3.3.3.3"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "front.example"),
            ("forwarded", "for=1.1.1.1"),
            ("authorization", "Bearer t"),
            ("cookie", "a=1;b=2"),
        ];
        let mut o = outgoing(&host, None);
        o.trusted = true;
        o.prefix = None;
        o.forward_authorization = true;
        o.minted = Some("fb_bucket=abcdefgh12");
        let map = upstream(h, &o);
        assert_eq!(
            map,
            [
                "authorization: Bearer t",
                "cookie: a=1;b=2; fb_bucket=abcdefgh12",
                "forwarded: for=1.1.1.1",
                "host: app.internal",
                "x-flagbase-role: anonymous",
                "x-forwarded-for: 1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.7",
                "x-forwarded-host: front.example",
                "x-forwarded-proto: https",
            ]
        );
    }

    #[test]
    fn fields_connection_names_are_gone_before_any_rule_reads_them() {
        let host = HeaderValue::from_static("app.internal");
        let served = Served {
            flag: "f".into(),
            // Not a field value: left out by both sinks alike.
            variant: "bad\nvalue".into(),
        };
        let h: Fields = &[
            ("host", "shop.example"),
            (
                "connection",
                "x-forwarded-for, x-forwarded-proto, cookie, host",
            ),
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-proto", "https"),
            ("cookie", "flagbase_session=secret"),
        ];
        let mut o = outgoing(&host, Some(&served));
        o.trusted = true;
        o.prefix = None;
        let map = upstream(h, &o);
        assert_eq!(
            map,
            [
                "host: app.internal",
                "x-flagbase-flag: f",
                "x-flagbase-role: anonymous",
                "x-forwarded-for: 10.0.0.7",
                "x-forwarded-host: shop.example",
                "x-forwarded-proto: http",
            ]
        );
    }

    #[test]
    fn a_minted_bucket_is_the_only_cookie_when_connection_names_cookie() {
        let host = HeaderValue::from_static("app.internal");
        let h: Fields = &[("connection", "cookie"), ("cookie", "a=1")];
        let mut o = outgoing(&host, None);
        o.minted = Some("fb_bucket=abcdefgh12");
        let map = upstream(h, &o);
        assert!(
            map.contains(&"cookie: fb_bucket=abcdefgh12".to_string()),
            "{map:?}"
        );
        assert_eq!(map.iter().filter(|l| l.starts_with("cookie:")).count(), 1);
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for text in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "100.99.9.255",
            "192.168.1.109",
            "::1",
            "2001:db8::8a2e:370:7334",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            let mut out = Vec::new();
            write_ip(&mut out, ip);
            assert_eq!(String::from_utf8(out).unwrap(), ip.to_string());
        }
    }

    #[test]
    fn a_session_cookie_alone_leaves_no_cookie_field() {
        let host = HeaderValue::from_static("app.internal");
        let h: Fields = &[("cookie", "flagbase_session=s")];
        let map = upstream(h, &outgoing(&host, None));
        assert!(!map.iter().any(|l| l.starts_with("cookie:")), "{map:?}");
    }
}
