//! The incremental decoder of client ops: fed the bytes of each read as they
//! come, it yields every complete op and keeps only the unfinished tail, so an
//! op may be split at any byte and a read may hold many ops.
//!
//! The grammar follows nats-server's parser (server/parser.go): op names are
//! case-insensitive, arguments are separated by spaces or tabs, lines end in
//! `\n` with an optional `\r` before it, `PING`/`PONG`/`+OK` ignore anything
//! up to the end of their line, and a message must be followed by `\r\n`.

use bytes::Bytes;
use memchr::memchr;

use super::{ClientOp, Connect, Limits, ProtocolError};

/// The ops a client may send, by name. No name is a prefix of another, so a
/// name is recognised as soon as its last byte arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Connect,
    Pub,
    HPub,
    Sub,
    Unsub,
    Ping,
    Pong,
    Info,
    Ok,
    Err,
}

const OPS: [(&[u8], Op); 10] = [
    (b"CONNECT", Op::Connect),
    (b"PUB", Op::Pub),
    (b"HPUB", Op::HPub),
    (b"SUB", Op::Sub),
    (b"UNSUB", Op::Unsub),
    (b"PING", Op::Ping),
    (b"PONG", Op::Pong),
    (b"INFO", Op::Info),
    (b"+OK", Op::Ok),
    (b"-ERR", Op::Err),
];
const LONGEST_OP: usize = 7;

/// A message whose control line has been read and whose payload is being.
#[derive(Debug)]
struct PendingMsg {
    subject: String,
    reply: Option<String>,
    /// `Some(header length)` for `HPUB`.
    header_len: Option<usize>,
    /// Payload (headers included) followed by the `\r\n` that must end it;
    /// its capacity is reserved up front and never exceeds `max_payload + 2`.
    body: Vec<u8>,
    size: usize,
}

#[derive(Debug)]
enum State {
    /// Reading an op name; `len` bytes of it so far, upper-cased.
    Name {
        buf: [u8; LONGEST_OP],
        len: usize,
    },
    /// After `PUB`, `HPUB`, `SUB`, `UNSUB`, `-ERR`: a space or tab must follow.
    NeedSpace(Op),
    /// Skipping the blanks before an op's arguments.
    Blanks(Op),
    /// Collecting an op's arguments in `Decoder::line`.
    Args(Op),
    /// Ignoring the rest of a `PING`, `PONG` or `+OK` line.
    Rest(Op),
    Payload(PendingMsg),
    /// The stream was refused; every later call repeats why.
    Failed(ProtocolError),
}

const START: State = State::Name {
    buf: [0; LONGEST_OP],
    len: 0,
};

/// The per-connection decoder. See the module documentation.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    state: State,
    /// The arguments of the op being read; at most `max_control_line + 1`
    /// bytes (the `+ 1` is a `\r` whose `\n` has not arrived yet).
    line: Vec<u8>,
}

impl Decoder {
    pub fn new(limits: Limits) -> Self {
        Decoder {
            limits,
            state: START,
            line: Vec::new(),
        }
    }

    /// How many bytes of unfinished ops the decoder holds.
    pub fn buffered(&self) -> usize {
        match &self.state {
            State::Payload(msg) => self.line.len() + msg.body.len(),
            _ => self.line.len(),
        }
    }

    /// Decodes `input`, appending every op it completes to `out`. On error the
    /// ops decoded before the fault are in `out` (nats-server acts on them
    /// too) and the connection must be closed.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<ClientOp>) -> Result<(), ProtocolError> {
        if let State::Failed(err) = &self.state {
            return Err(err.clone());
        }
        match self.run(input, out) {
            Ok(()) => Ok(()),
            Err(err) => {
                self.state = State::Failed(err.clone());
                self.line = Vec::new();
                Err(err)
            }
        }
    }

    fn run(&mut self, input: &[u8], out: &mut Vec<ClientOp>) -> Result<(), ProtocolError> {
        let mut i = 0;
        while i < input.len() {
            match &mut self.state {
                State::Name { buf, len } => {
                    let byte = input[i].to_ascii_uppercase();
                    // No name is a prefix of another, so at most one of these holds.
                    let mut complete = None;
                    let mut partial = false;
                    for (name, op) in OPS {
                        if name.len() > *len && name[..*len] == buf[..*len] && name[*len] == byte {
                            if name.len() == *len + 1 {
                                complete = Some(op);
                            } else {
                                partial = true;
                            }
                        }
                    }
                    if let Some(op) = complete {
                        self.state = after_name(op);
                    } else if partial {
                        buf[*len] = byte;
                        *len += 1;
                    } else {
                        return Err(ProtocolError::UnknownOperation);
                    }
                    i += 1;
                }
                State::NeedSpace(op) => {
                    if !is_blank(input[i]) {
                        return Err(ProtocolError::UnknownOperation);
                    }
                    self.state = State::Blanks(*op);
                    i += 1;
                }
                State::Blanks(op) => {
                    if is_blank(input[i]) {
                        i += 1;
                    } else {
                        self.state = State::Args(*op);
                    }
                }
                State::Args(op) => {
                    let op = *op;
                    let rest = &input[i..];
                    let max = self.limits.max_control_line;
                    match memchr(b'\n', rest) {
                        Some(end) => {
                            let segment = &rest[..end];
                            let ends_cr = match segment.last() {
                                Some(&last) => last == b'\r',
                                None => self.line.last() == Some(&b'\r'),
                            };
                            if self.line.len() + segment.len() - usize::from(ends_cr) > max {
                                return Err(ProtocolError::MaxControlLine);
                            }
                            self.line.extend_from_slice(segment);
                            if ends_cr {
                                self.line.pop();
                            }
                            i += end + 1;
                            let next = self.finish_line(op, out);
                            self.line.clear();
                            self.state = next?;
                        }
                        None => {
                            // Refused before it is copied, so a flood of
                            // argument bytes never grows the buffer.
                            let ends_cr = rest.last() == Some(&b'\r');
                            if self.line.len() + rest.len() - usize::from(ends_cr) > max {
                                return Err(ProtocolError::MaxControlLine);
                            }
                            self.line.extend_from_slice(rest);
                            i = input.len();
                        }
                    }
                }
                State::Rest(op) => match memchr(b'\n', &input[i..]) {
                    Some(end) => {
                        match op {
                            Op::Ping => out.push(ClientOp::Ping),
                            Op::Pong => out.push(ClientOp::Pong),
                            _ => {}
                        }
                        self.state = START;
                        i += end + 1;
                    }
                    None => i = input.len(),
                },
                State::Payload(msg) => {
                    let want = msg.size + 2 - msg.body.len();
                    let take = want.min(input.len() - i);
                    msg.body.extend_from_slice(&input[i..i + take]);
                    i += take;
                    if take == want {
                        let State::Payload(msg) = std::mem::replace(&mut self.state, START) else {
                            unreachable!("matched just above")
                        };
                        out.push(finish_msg(msg)?);
                    }
                }
                State::Failed(err) => return Err(err.clone()),
            }
        }
        Ok(())
    }

    /// Acts on a complete argument line (`self.line`, without its line end)
    /// and says what comes next.
    fn finish_line(&self, op: Op, out: &mut Vec<ClientOp>) -> Result<State, ProtocolError> {
        let line = &self.line[..];
        match op {
            Op::Pub | Op::HPub => {
                let (args, count) = split_args(line);
                let (subject, reply, sizes) = match (op, count) {
                    (Op::Pub, 2) | (Op::HPub, 3) => (args[0], None, &args[1..count]),
                    (Op::Pub, 3) | (Op::HPub, 4) => (args[0], Some(args[1]), &args[2..count]),
                    _ => return Err(ProtocolError::Malformed("PUB arguments")),
                };
                let (header_len, size) = if op == Op::HPub {
                    let header =
                        parse_size(sizes[0]).ok_or(ProtocolError::Malformed("HPUB header size"))?;
                    let total =
                        parse_size(sizes[1]).ok_or(ProtocolError::Malformed("HPUB total size"))?;
                    if header > total {
                        return Err(ProtocolError::Malformed("HPUB header size over total"));
                    }
                    (Some(header), total)
                } else {
                    let size = parse_size(sizes[0]).ok_or(ProtocolError::Malformed("PUB size"))?;
                    (None, size)
                };
                if size > self.limits.max_payload {
                    return Err(ProtocolError::MaxPayload);
                }
                Ok(State::Payload(PendingMsg {
                    subject: text(subject)?,
                    reply: reply.map(text).transpose()?,
                    header_len,
                    body: Vec::with_capacity(size + 2),
                    size,
                }))
            }
            Op::Sub => {
                let (args, count) = split_args(line);
                let (subject, queue, sid) = match count {
                    2 => (args[0], None, args[1]),
                    3 => (args[0], Some(args[1]), args[2]),
                    _ => return Err(ProtocolError::Malformed("SUB arguments")),
                };
                out.push(ClientOp::Sub {
                    subject: text(subject)?,
                    queue: queue.map(text).transpose()?,
                    sid: text(sid)?,
                });
                Ok(START)
            }
            Op::Unsub => {
                let (args, count) = split_args(line);
                let (sid, max) = match count {
                    1 => (args[0], None),
                    // nats-server reads a garbage maximum as "unsubscribe now".
                    2 => (args[0], parse_size(args[1]).map(|max| max as u64)),
                    _ => return Err(ProtocolError::Malformed("UNSUB arguments")),
                };
                out.push(ClientOp::Unsub {
                    sid: text(sid)?,
                    max,
                });
                Ok(START)
            }
            Op::Connect => {
                let connect: Connect = serde_json::from_slice(line)
                    .map_err(|_| ProtocolError::Malformed("CONNECT JSON"))?;
                out.push(ClientOp::Connect(Box::new(connect)));
                Ok(START)
            }
            Op::Err => {
                out.push(ClientOp::Err(String::from_utf8_lossy(line).into_owned()));
                Ok(START)
            }
            // nats-server accepts and ignores INFO from clients.
            Op::Info => Ok(START),
            Op::Ping | Op::Pong | Op::Ok => unreachable!("these ops take no arguments"),
        }
    }
}

fn after_name(op: Op) -> State {
    match op {
        Op::Pub | Op::HPub | Op::Sub | Op::Unsub | Op::Err => State::NeedSpace(op),
        // As in nats-server, CONNECT and INFO may be followed directly by
        // their JSON.
        Op::Connect | Op::Info => State::Blanks(op),
        Op::Ping | Op::Pong | Op::Ok => State::Rest(op),
    }
}

fn finish_msg(msg: PendingMsg) -> Result<ClientOp, ProtocolError> {
    if msg.body[msg.size..] != *b"\r\n" {
        return Err(ProtocolError::UnknownOperation);
    }
    let mut body = Bytes::from(msg.body);
    body.truncate(msg.size);
    Ok(match msg.header_len {
        None => ClientOp::Pub {
            subject: msg.subject,
            reply: msg.reply,
            payload: body,
        },
        Some(header_len) => ClientOp::HPub {
            subject: msg.subject,
            reply: msg.reply,
            headers: body.split_to(header_len),
            payload: body,
        },
    })
}

fn is_blank(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

/// Splits arguments on blanks (and stray `\r`/`\n`, as nats-server's
/// `splitArg` does). No op takes more than four, so a fifth means malformed:
/// the count is then 5 and the array holds the first five.
fn split_args(line: &[u8]) -> ([&[u8]; 5], usize) {
    let mut args: [&[u8]; 5] = [&[]; 5];
    let mut count = 0;
    for arg in line
        .split(|&b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .filter(|arg| !arg.is_empty())
    {
        if count == args.len() {
            break;
        }
        args[count] = arg;
        count += 1;
    }
    (args, count)
}

/// A size as nats-server reads one: one to nine ASCII digits, nothing else
/// (no sign, no blanks), so it is never negative and never overflows.
fn parse_size(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0usize, |n, d| n * 10 + usize::from(d - b'0')),
    )
}

fn text(bytes: &[u8]) -> Result<String, ProtocolError> {
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| ProtocolError::Malformed("non-UTF-8 name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_size_accepts_only_one_to_nine_digits() {
        assert_eq!(parse_size(b"0"), Some(0));
        assert_eq!(parse_size(b"999999999"), Some(999_999_999));
        for bad in [&b""[..], b"1000000000", b"-1", b"+1", b"1a", b" 1", b"0x10"] {
            assert_eq!(parse_size(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn split_args_counts_past_four_as_five() {
        let (args, count) = split_args(b" a\tb  c ");
        assert_eq!(count, 3);
        assert_eq!(&args[..3], &[&b"a"[..], b"b", b"c"]);
        assert_eq!(split_args(b"a b c d e f g").1, 5);
    }
}
