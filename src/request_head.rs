//! What the gateway and the credential check read of a request head,
//! whichever HTTP path parsed it: hyper's `Parts` (the API, and gateway
//! requests hyper serves), or `RawHead`, the fields `httparse` found in the
//! connection's buffer (the gateway's own HTTP/1 path), which nothing
//! copies into a header map. Routing, the evaluation context, the
//! credential and the upstream's fields are each written once, against
//! this trait.

use hyper::http::request::Parts;

pub trait RequestHead {
    fn method(&self) -> &str;
    /// The path of the request target, without the query.
    fn path(&self) -> &str;
    fn query(&self) -> Option<&str>;
    /// Every field in order: the name as the path keeps it (lower case from
    /// hyper, as sent from `RawHead`: compare without case) and the value.
    fn fields(&self) -> impl Iterator<Item = (&str, &[u8])>;
    /// The values of field `name` (lower case), in order.
    fn values(&self, name: &'static str) -> impl Iterator<Item = &[u8]>;

    fn first(&self, name: &'static str) -> Option<&[u8]> {
        self.values(name).next()
    }

    fn has(&self, name: &'static str) -> bool {
        self.first(name).is_some()
    }
}

impl RequestHead for Parts {
    fn method(&self) -> &str {
        self.method.as_str()
    }

    fn path(&self) -> &str {
        self.uri.path()
    }

    fn query(&self) -> Option<&str> {
        self.uri.query()
    }

    fn fields(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes()))
    }

    fn values(&self, name: &'static str) -> impl Iterator<Item = &[u8]> {
        self.headers.get_all(name).iter().map(|v| v.as_bytes())
    }

    fn has(&self, name: &'static str) -> bool {
        self.headers.contains_key(name)
    }
}

/// A field value as text, as `HeaderValue::to_str` reads it: visible
/// ASCII, spaces and tabs only.
pub fn text(value: &[u8]) -> Option<&str> {
    // A fold, not `all`: no early exit, so the compiler checks many bytes
    // per instruction (every credential is read through here).
    let visible = value.iter().fold(true, |ok, &b| {
        ok & ((b == b'\t') | ((32..127).contains(&b)))
    });
    visible.then(|| std::str::from_utf8(value).ok()).flatten()
}

/// A request head as `httparse` read it, borrowed from the buffer.
pub struct RawHead<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub fields: &'a [httparse::Header<'a>],
}

impl RequestHead for RawHead<'_> {
    fn method(&self) -> &str {
        self.method
    }

    fn path(&self) -> &str {
        self.path
    }

    fn query(&self) -> Option<&str> {
        self.query
    }

    fn fields(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.fields.iter().map(|f| (f.name, f.value))
    }

    // A few fields, scanned: cheaper than hashing them into a map.
    fn values(&self, name: &'static str) -> impl Iterator<Item = &[u8]> {
        self.fields
            .iter()
            .filter(move |f| f.name.eq_ignore_ascii_case(name))
            .map(|f| f.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_heads_answer_alike() {
        let raw = b"GET /gateway/a?x=1 HTTP/1.1\r\nHost: h\r\nX-Two: 1\r\nx-two: 2\r\nAccept: */*\r\n\r\n";
        let mut fields = [httparse::EMPTY_HEADER; 8];
        let mut req = httparse::Request::new(&mut fields);
        assert!(req.parse(raw).unwrap().is_complete());
        let raw_head = RawHead {
            method: req.method.unwrap(),
            path: "/gateway/a",
            query: Some("x=1"),
            fields: req.headers,
        };
        let parts = hyper::Request::get("/gateway/a?x=1")
            .header("host", "h")
            .header("x-two", "1")
            .header("x-two", "2")
            .header("accept", "*/*")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        assert_eq!(summary(&raw_head), summary(&parts));
        assert_eq!(
            summary(&parts),
            "GET /gateway/a Some(\"x=1\") [[49], [50]] true false 4"
        );
    }

    fn summary(head: &impl RequestHead) -> String {
        let values: Vec<&[u8]> = head.values("x-two").collect();
        format!(
            "{} {} {:?} {:?} {} {} {}",
            head.method(),
            head.path(),
            head.query(),
            values,
            head.has("x-two"),
            head.has("x-absent"),
            head.fields().count()
        )
    }
}
