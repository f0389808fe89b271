//! The encoder of server ops: `INFO`, `MSG`, `HMSG`, `+OK`, `-ERR`, `PING`,
//! `PONG`, appended to a connection's outbound buffer.

use serde::Serialize;

/// The `INFO` a server sends first on every connection. It announces
/// headers and never JetStream, which this server does not implement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Info {
    pub server_id: String,
    pub server_name: String,
    pub version: String,
    /// Always 1: the protocol with dynamic INFO updates and headers.
    pub proto: u8,
    pub host: String,
    pub port: u16,
    pub headers: bool,
    pub max_payload: usize,
    pub client_id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub auth_required: bool,
}

impl Info {
    /// An `INFO` with the fields every client reads filled in; the caller
    /// sets the rest (`host`, `port`, `client_id`, ...).
    pub fn new(server_id: impl Into<String>, version: impl Into<String>) -> Self {
        let server_id = server_id.into();
        Info {
            server_name: server_id.clone(),
            server_id,
            version: version.into(),
            proto: 1,
            host: String::new(),
            port: 0,
            headers: true,
            max_payload: super::MAX_PAYLOAD,
            client_id: 0,
            client_ip: None,
            auth_required: false,
        }
    }
}

pub fn encode_info(info: &Info, out: &mut Vec<u8>) {
    out.extend_from_slice(b"INFO ");
    // Serialising a struct of strings and numbers into memory cannot fail.
    serde_json::to_writer(&mut *out, info).expect("INFO serialises");
    out.extend_from_slice(b"\r\n");
}

/// `MSG <subject> <sid> [reply] <size>\r\n<payload>\r\n`
pub fn encode_msg(
    subject: &str,
    sid: &str,
    reply: Option<&str>,
    payload: &[u8],
    out: &mut Vec<u8>,
) {
    out.reserve(subject.len() + sid.len() + payload.len() + 32);
    out.extend_from_slice(b"MSG ");
    push_names(subject, sid, reply, out);
    push_usize(payload.len(), out);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

/// `HMSG <subject> <sid> [reply] <header size> <total size>\r\n<headers><payload>\r\n`
pub fn encode_hmsg(
    subject: &str,
    sid: &str,
    reply: Option<&str>,
    headers: &[u8],
    payload: &[u8],
    out: &mut Vec<u8>,
) {
    out.reserve(subject.len() + sid.len() + headers.len() + payload.len() + 48);
    out.extend_from_slice(b"HMSG ");
    push_names(subject, sid, reply, out);
    push_usize(headers.len(), out);
    out.push(b' ');
    push_usize(headers.len() + payload.len(), out);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(headers);
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

pub fn encode_ok(out: &mut Vec<u8>) {
    out.extend_from_slice(b"+OK\r\n");
}

/// `-ERR '<text>'`, quoted as nats-server quotes it.
pub fn encode_err(text: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"-ERR '");
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"'\r\n");
}

pub fn encode_ping(out: &mut Vec<u8>) {
    out.extend_from_slice(b"PING\r\n");
}

pub fn encode_pong(out: &mut Vec<u8>) {
    out.extend_from_slice(b"PONG\r\n");
}

fn push_names(subject: &str, sid: &str, reply: Option<&str>, out: &mut Vec<u8>) {
    out.extend_from_slice(subject.as_bytes());
    out.push(b' ');
    out.extend_from_slice(sid.as_bytes());
    out.push(b' ');
    if let Some(reply) = reply {
        out.extend_from_slice(reply.as_bytes());
        out.push(b' ');
    }
}

fn push_usize(mut n: usize, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msg_and_hmsg_frame_as_nats_server_does() {
        let mut out = Vec::new();
        encode_msg("a.b", "7", None, b"hello", &mut out);
        encode_msg("a.b", "7", Some("_INBOX.x"), b"", &mut out);
        encode_hmsg("a", "1", Some("r"), b"NATS/1.0\r\n\r\n", b"hi", &mut out);
        assert_eq!(
            out,
            b"MSG a.b 7 5\r\nhello\r\nMSG a.b 7 _INBOX.x 0\r\n\r\nHMSG a 1 r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"
        );
    }

    #[test]
    fn err_ok_ping_pong() {
        let mut out = Vec::new();
        encode_err("Unknown Protocol Operation", &mut out);
        encode_ok(&mut out);
        encode_ping(&mut out);
        encode_pong(&mut out);
        assert_eq!(
            out,
            b"-ERR 'Unknown Protocol Operation'\r\n+OK\r\nPING\r\nPONG\r\n"
        );
    }

    #[test]
    fn info_announces_proto_1_headers_and_no_jetstream() {
        let mut info = Info::new("FB1", "0.1.0");
        info.client_id = 42;
        let mut out = Vec::new();
        encode_info(&info, &mut out);
        assert!(out.starts_with(b"INFO {") && out.ends_with(b"}\r\n"));
        let json: serde_json::Value = serde_json::from_slice(&out[5..out.len() - 2]).unwrap();
        assert_eq!(json["proto"], 1);
        assert_eq!(json["headers"], true);
        assert_eq!(json["max_payload"], 1024 * 1024);
        assert_eq!(json["client_id"], 42);
        assert_eq!(json["server_id"], "FB1");
        assert!(json.get("jetstream").is_none());
        assert!(json.get("auth_required").is_none());
    }
}
