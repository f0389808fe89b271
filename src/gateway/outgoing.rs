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
    Served, HOP_BY_HOP, X_API_KEY, X_FLAGBASE_FLAG, X_FLAGBASE_ROLE, X_FLAGBASE_USER_ID,
    X_FLAGBASE_VARIANT, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PREFIX, X_FORWARDED_PROTO,
};
use crate::iam::Caller;

/// Where the upstream request's fields go.
pub(super) trait FieldSink {
    /// A field of the client's request, passed on as it came.
    fn pass(&mut self, name: &HeaderName, value: &HeaderValue);
    /// A field the gateway sets. A value that is not a valid field value
    /// (a control character from a user id, say) is left out, by both sinks.
    fn set(&mut self, name: &HeaderName, value: &[u8]);
}

impl FieldSink for HeaderMap {
    fn pass(&mut self, name: &HeaderName, value: &HeaderValue) {
        self.append(name.clone(), value.clone());
    }

    fn set(&mut self, name: &HeaderName, value: &[u8]) {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            self.append(name.clone(), value);
        }
    }
}

/// The head's bytes: `name: value` lines.
impl FieldSink for Vec<u8> {
    fn pass(&mut self, name: &HeaderName, value: &HeaderValue) {
        super::h1::field(self, name.as_str().as_bytes(), value.as_bytes());
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
    value.iter().all(|&b| (b >= 32 && b != 127) || b == b'\t')
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

/// Writes the upstream request's fields for the client's `headers`.
pub(super) fn upstream_fields(headers: &HeaderMap, o: &Outgoing<'_>, out: &mut impl FieldSink) {
    // Fields `Connection` names are hop-by-hop too; rare, so only then a
    // list. Everything below reads the request as if they were gone.
    let named: Vec<HeaderName> = if headers.contains_key(header::CONNECTION) {
        headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect()
    } else {
        Vec::new()
    };
    let present = |name: &HeaderName| !named.contains(name) && headers.contains_key(name);
    let proto_kept = o.trusted
        && !named.contains(&X_FORWARDED_PROTO)
        && headers
            .get(&X_FORWARDED_PROTO)
            .is_some_and(|v| matches!(v.as_bytes(), b"http" | b"https"));
    let host_kept = o.trusted && present(&X_FORWARDED_HOST);
    let cookies_sent = !named.contains(&header::COOKIE);
    let session = cookies_sent
        && context::cookies(headers).any(|(n, _)| n == crate::iam::browser::COOKIE_NAME);
    let cookie_rewritten = session || o.minted.is_some();

    for (name, value) in headers {
        let dropped = HOP_BY_HOP.contains(name)
            || named.contains(name)
            || name == header::HOST
            || name == X_FORWARDED_FOR
            || name == X_FORWARDED_PREFIX
            || (name == header::FORWARDED && !o.trusted)
            || (name == X_FORWARDED_PROTO && !proto_kept)
            || (name == X_FORWARDED_HOST && !host_kept)
            || (!o.forward_authorization && (name == header::AUTHORIZATION || name == X_API_KEY))
            || (name == header::COOKIE && cookie_rewritten)
            || name.as_str().starts_with("x-flagbase-");
        if !dropped {
            out.pass(name, value);
        }
    }

    // An address is at most 45 bytes as text.
    let mut xff = Vec::with_capacity(64);
    if o.trusted && !named.contains(&X_FORWARDED_FOR) {
        for earlier in headers.get_all(&X_FORWARDED_FOR).iter() {
            if let Ok(text) = earlier.to_str() {
                xff.extend_from_slice(text.as_bytes());
                xff.extend_from_slice(b", ");
            }
        }
    }
    write_ip(&mut xff, o.peer.to_canonical());
    out.set(&X_FORWARDED_FOR, &xff);
    if !proto_kept {
        out.set(&X_FORWARDED_PROTO, b"http");
    }
    if !host_kept {
        // The client's own `Host`, even when `Connection` named it.
        if let Some(host) = headers.get(header::HOST) {
            out.set(&X_FORWARDED_HOST, host.as_bytes());
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
        let lines = headers
            .get_all(header::COOKIE)
            .iter()
            .filter(|_| cookies_sent);
        if session {
            // Pair by pair, without the session's.
            let name = crate::iam::browser::COOKIE_NAME;
            lines
                .filter_map(|v| v.to_str().ok())
                .flat_map(|line| line.split(';'))
                .map(str::trim)
                .filter(|pair| !pair.is_empty())
                .filter(|pair| pair.split_once('=').is_none_or(|(n, _)| n.trim() != name))
                .for_each(|pair| add(pair.as_bytes()));
        } else {
            lines.for_each(|line| add(line.as_bytes()));
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

    fn request(fields: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in fields {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    /// Both sinks, as sorted `name: value` lines.
    fn both(headers: &HeaderMap, o: &Outgoing<'_>) -> (Vec<String>, Vec<String>) {
        let mut map = HeaderMap::new();
        upstream_fields(headers, o, &mut map);
        let mut from_map: Vec<String> = map
            .iter()
            .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
            .collect();
        let mut bytes = Vec::new();
        upstream_fields(headers, o, &mut bytes);
        let mut from_bytes: Vec<String> = String::from_utf8(bytes)
            .unwrap()
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        from_map.sort();
        from_bytes.sort();
        (from_map, from_bytes)
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
        let h = request(&[
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
        ]);
        let (map, bytes) = both(&h, &outgoing(&host, Some(&served)));
        assert_eq!(map, bytes);
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
        let h = request(&[
            ("host", "shop.example"),
            ("x-forwarded-for", "1.1.1.1, 2.2.2.2"),
            ("x-forwarded-for", "3.3.3.3"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "front.example"),
            ("forwarded", "for=1.1.1.1"),
            ("authorization", "Bearer t"),
            ("cookie", "a=1;b=2"),
        ]);
        let mut o = outgoing(&host, None);
        o.trusted = true;
        o.prefix = None;
        o.forward_authorization = true;
        o.minted = Some("fb_bucket=abcdefgh12");
        let (map, bytes) = both(&h, &o);
        assert_eq!(map, bytes);
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
        let h = request(&[
            ("host", "shop.example"),
            (
                "connection",
                "x-forwarded-for, x-forwarded-proto, cookie, host",
            ),
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-proto", "https"),
            ("cookie", "flagbase_session=secret"),
        ]);
        let mut o = outgoing(&host, Some(&served));
        o.trusted = true;
        o.prefix = None;
        let (map, bytes) = both(&h, &o);
        assert_eq!(map, bytes);
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
        let h = request(&[("connection", "cookie"), ("cookie", "a=1")]);
        let mut o = outgoing(&host, None);
        o.minted = Some("fb_bucket=abcdefgh12");
        let (map, bytes) = both(&h, &o);
        assert_eq!(map, bytes);
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
        let h = request(&[("cookie", "flagbase_session=s")]);
        let (map, bytes) = both(&h, &outgoing(&host, None));
        assert_eq!(map, bytes);
        assert!(!map.iter().any(|l| l.starts_with("cookie:")), "{map:?}");
    }
}
