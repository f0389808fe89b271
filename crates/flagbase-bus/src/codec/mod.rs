//! The NATS client protocol on the wire: the ops a client sends, the limits
//! that bound them, the errors nats-server answers with, and the encoder for
//! the ops the server sends back.

mod decode;
mod encode;

pub use decode::Decoder;
pub use encode::{
    encode_err, encode_hmsg, encode_info, encode_msg, encode_ok, encode_ping, encode_pong, Info,
};

use bytes::Bytes;
use serde::Deserialize;

/// nats-server's default limit on a control line's arguments (`max_control_line`).
pub const MAX_CONTROL_LINE: usize = 4096;
/// nats-server's default `max_payload` (1 MiB).
pub const MAX_PAYLOAD: usize = 1024 * 1024;

/// What a single connection's decoder may hold on to. The decoder never
/// buffers more than `max_control_line + 1` bytes of a control line or
/// `max_payload + 2` bytes of a message (plus that message's subject and
/// reply, within `max_control_line`), whatever the client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_control_line: usize,
    pub max_payload: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_control_line: MAX_CONTROL_LINE,
            max_payload: MAX_PAYLOAD,
        }
    }
}

/// One operation sent by a client.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientOp {
    Connect(Box<Connect>),
    Pub {
        subject: String,
        reply: Option<String>,
        payload: Bytes,
    },
    /// `HPUB`: `headers` is the raw header block (starting `NATS/1.0`), kept
    /// as sent so that it can be relayed in `HMSG` untouched.
    HPub {
        subject: String,
        reply: Option<String>,
        headers: Bytes,
        payload: Bytes,
    },
    Sub {
        subject: String,
        queue: Option<String>,
        sid: String,
    },
    /// `max` is the number given after the sid when it is a valid size; like
    /// nats-server, a server treats `None` and `Some(0)` as "now".
    Unsub {
        sid: String,
        max: Option<u64>,
    },
    Ping,
    Pong,
    /// `-ERR` sent by a client; nats-server closes such a connection.
    Err(String),
}

/// One operation sent by a client, borrowed from the read buffer or the
/// decoder (see [`Decoder::next`]): what the server acts on, with no copy.
#[derive(Debug, Clone, PartialEq)]
pub enum OpRef<'a> {
    Connect(Box<Connect>),
    /// `PUB` when `headers` is `None`, `HPUB` otherwise (its header block
    /// may be empty).
    Pub {
        subject: &'a str,
        reply: Option<&'a str>,
        headers: Option<&'a [u8]>,
        payload: &'a [u8],
    },
    Sub {
        subject: &'a str,
        queue: Option<&'a str>,
        sid: &'a str,
    },
    Unsub {
        sid: &'a str,
        max: Option<u64>,
    },
    Ping,
    Pong,
    /// The text after `-ERR`, as sent.
    Err(&'a [u8]),
}

impl OpRef<'_> {
    /// The op with its own copies of what it borrows.
    pub fn into_owned(self) -> ClientOp {
        match self {
            OpRef::Connect(connect) => ClientOp::Connect(connect),
            OpRef::Pub {
                subject,
                reply,
                headers: None,
                payload,
            } => ClientOp::Pub {
                subject: subject.into(),
                reply: reply.map(Into::into),
                payload: Bytes::copy_from_slice(payload),
            },
            OpRef::Pub {
                subject,
                reply,
                headers: Some(headers),
                payload,
            } => ClientOp::HPub {
                subject: subject.into(),
                reply: reply.map(Into::into),
                headers: Bytes::copy_from_slice(headers),
                payload: Bytes::copy_from_slice(payload),
            },
            OpRef::Sub {
                subject,
                queue,
                sid,
            } => ClientOp::Sub {
                subject: subject.into(),
                queue: queue.map(Into::into),
                sid: sid.into(),
            },
            OpRef::Unsub { sid, max } => ClientOp::Unsub {
                sid: sid.into(),
                max,
            },
            OpRef::Ping => ClientOp::Ping,
            OpRef::Pong => ClientOp::Pong,
            OpRef::Err(text) => ClientOp::Err(String::from_utf8_lossy(text).into_owned()),
        }
    }
}

/// The JSON of a client's `CONNECT`. Absent `verbose`, `pedantic` and `echo`
/// mean true, as in nats-server's defaults; unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Connect {
    #[serde(default = "yes")]
    pub verbose: bool,
    #[serde(default = "yes")]
    pub pedantic: bool,
    #[serde(default = "yes")]
    pub echo: bool,
    #[serde(default)]
    pub tls_required: bool,
    #[serde(default, alias = "token")]
    pub auth_token: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub pass: Option<String>,
    #[serde(default)]
    pub jwt: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub lang: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub protocol: i64,
    #[serde(default)]
    pub headers: bool,
    #[serde(default)]
    pub no_responders: bool,
}

fn yes() -> bool {
    true
}

/// Why the decoder refused the stream. After any of these the connection
/// must be closed: the decoder has lost its place in the stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Not an op name, or a message not followed by CRLF.
    #[error("Unknown Protocol Operation")]
    UnknownOperation,
    #[error("maximum control line exceeded")]
    MaxControlLine,
    #[error("Maximum Payload Violation")]
    MaxPayload,
    /// Wrong number of arguments, a bad size, a header size larger than the
    /// total, non-UTF-8 names, or CONNECT JSON that does not parse.
    /// nats-server closes such connections without an `-ERR`.
    #[error("malformed {0}")]
    Malformed(&'static str),
}

impl ProtocolError {
    /// The text nats-server sends as `-ERR '<text>'` before closing, if any.
    pub fn err_text(&self) -> Option<&'static str> {
        match self {
            ProtocolError::UnknownOperation => Some("Unknown Protocol Operation"),
            ProtocolError::MaxControlLine => Some("maximum control line exceeded"),
            ProtocolError::MaxPayload => Some("Maximum Payload Violation"),
            ProtocolError::Malformed(_) => None,
        }
    }
}
