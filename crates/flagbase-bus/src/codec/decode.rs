//! The incremental decoder of client ops: fed the bytes of each read as they
//! come, it yields every complete op and keeps only the unfinished tail, so an
//! op may be split at any byte and a read may hold many ops.
//!
//! The grammar follows nats-server's parser (server/parser.go): op names are
//! case-insensitive, arguments are separated by spaces or tabs, lines end in
//! `\n` with an optional `\r` before it, `PING`/`PONG`/`+OK` ignore anything
//! up to the end of their line, and a message must be followed by `\r\n`.
//!
//! The server pulls ops one at a time with [`Decoder::next`], borrowed from
//! the read buffer whenever the whole op is in it (the usual case: names and
//! payload are never copied nor allocated); only an op cut by the end of a
//! read is gathered in the decoder's own buffers, which are reused.

use memchr::memchr;

use super::{ClientOp, Connect, Limits, OpRef, ProtocolError};

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

/// Which buffer a [`Span`] points into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Buf {
    Input,
    Line,
    Names,
    Body,
}

/// A run of bytes in the input or in one of the decoder's buffers: a decoded
/// op is described by spans first, and borrowed once the decoder is done
/// changing its state.
#[derive(Debug, Clone, Copy)]
struct Span {
    buf: Buf,
    start: usize,
    end: usize,
}

impl Span {
    fn sub(self, start: usize, end: usize) -> Span {
        Span {
            buf: self.buf,
            start: self.start + start,
            end: self.start + end,
        }
    }
}

/// A complete op, as spans.
#[derive(Debug)]
enum Found {
    Connect(Box<Connect>),
    Ping,
    Pong,
    Err(Span),
    Sub {
        subject: Span,
        queue: Option<Span>,
        sid: Span,
    },
    Unsub {
        sid: Span,
        max: Option<u64>,
    },
    Msg {
        subject: Span,
        reply: Option<Span>,
        headers: Option<Span>,
        payload: Span,
    },
}

/// A message's control line, read: where its names are and what follows.
#[derive(Debug, Clone, Copy)]
struct MsgLine {
    subject: Span,
    reply: Option<Span>,
    /// `Some(header length)` for `HPUB`.
    header_len: Option<usize>,
    size: usize,
}

/// What an argument line turned out to be.
enum Line {
    Op(Found),
    Msg(MsgLine),
    Ignored,
}

#[derive(Debug)]
enum State {
    /// Reading an op name; `len` bytes of it so far, upper-cased.
    Name { buf: [u8; LONGEST_OP], len: usize },
    /// After `PUB`, `HPUB`, `SUB`, `UNSUB`, `-ERR`: a space or tab must follow.
    NeedSpace(Op),
    /// Skipping the blanks before an op's arguments.
    Blanks(Op),
    /// Collecting an op's arguments in `Decoder::line`.
    Args(Op),
    /// Ignoring the rest of a `PING`, `PONG` or `+OK` line.
    Rest(Op),
    /// Reading a message's payload (and the `\r\n` after it) into
    /// `Decoder::body`; its names are in `Decoder::names`.
    Payload(MsgLine),
    /// The stream was refused; every later call repeats why.
    Failed(ProtocolError),
}

const START: State = State::Name {
    buf: [0; LONGEST_OP],
    len: 0,
};

/// A body buffer larger than this is not kept once its message is done.
const KEEP_BODY: usize = 64 * 1024;

/// The per-connection decoder. See the module documentation.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    state: State,
    /// The arguments of the op being read; at most `max_control_line + 1`
    /// bytes (the `+ 1` is a `\r` whose `\n` has not arrived yet).
    line: Vec<u8>,
    /// The subject and reply of a message whose payload is being read (at
    /// most `max_control_line` bytes).
    names: Vec<u8>,
    /// The payload of that message and the `\r\n` after it; never more than
    /// `max_payload + 2` bytes.
    body: Vec<u8>,
    /// The last op handed out may borrow `line`, `names` or `body`: they are
    /// emptied at the next call instead of at once.
    lent: bool,
}

impl Decoder {
    pub fn new(limits: Limits) -> Self {
        Decoder {
            limits,
            state: START,
            line: Vec::new(),
            names: Vec::new(),
            body: Vec::new(),
            lent: false,
        }
    }

    /// How many bytes of unfinished ops the decoder holds, not counting the
    /// names of a message whose payload is being read: a control line, or a
    /// message's payload, never both.
    pub fn buffered(&self) -> usize {
        self.line.len() + self.body.len()
    }

    /// Decodes `input`, appending every op it completes to `out`. On error the
    /// ops decoded before the fault are in `out` (nats-server acts on them
    /// too) and the connection must be closed.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<ClientOp>) -> Result<(), ProtocolError> {
        let mut at = 0;
        while let Some(op) = self.next(input, &mut at)? {
            out.push(op.into_owned());
        }
        Ok(())
    }

    /// The next complete op in `input[*at..]`, moving `*at` past it; `None`
    /// once the rest of `input` is taken in (an unfinished op is kept for the
    /// next input). The op borrows from `input` or from the decoder, so it
    /// must be dropped before the next call. After an error the connection
    /// must be closed; every later call repeats the error.
    pub fn next<'a>(
        &'a mut self,
        input: &'a [u8],
        at: &mut usize,
    ) -> Result<Option<OpRef<'a>>, ProtocolError> {
        if let State::Failed(err) = &self.state {
            return Err(err.clone());
        }
        if self.lent {
            self.lent = false;
            self.line.clear();
            self.names.clear();
            self.body.clear();
            if self.body.capacity() > KEEP_BODY {
                self.body = Vec::new();
            }
        }
        match self.step(input, at) {
            Ok(None) => Ok(None),
            Ok(Some(found)) => Ok(Some(self.borrow(input, found))),
            Err(err) => {
                self.state = State::Failed(err.clone());
                self.line = Vec::new();
                self.names = Vec::new();
                self.body = Vec::new();
                Err(err)
            }
        }
    }

    fn borrow<'a>(&'a self, input: &'a [u8], found: Found) -> OpRef<'a> {
        let bytes = |span: Span| -> &'a [u8] {
            let buf = match span.buf {
                Buf::Input => input,
                Buf::Line => &self.line,
                Buf::Names => &self.names,
                Buf::Body => &self.body,
            };
            &buf[span.start..span.end]
        };
        // Names were checked to be UTF-8 when their line was read.
        let name = |span: Span| std::str::from_utf8(bytes(span)).expect("checked UTF-8");
        match found {
            Found::Connect(connect) => OpRef::Connect(connect),
            Found::Ping => OpRef::Ping,
            Found::Pong => OpRef::Pong,
            Found::Err(text) => OpRef::Err(bytes(text)),
            Found::Sub {
                subject,
                queue,
                sid,
            } => OpRef::Sub {
                subject: name(subject),
                queue: queue.map(name),
                sid: name(sid),
            },
            Found::Unsub { sid, max } => OpRef::Unsub {
                sid: name(sid),
                max,
            },
            Found::Msg {
                subject,
                reply,
                headers,
                payload,
            } => OpRef::Pub {
                subject: name(subject),
                reply: reply.map(name),
                headers: headers.map(bytes),
                payload: bytes(payload),
            },
        }
    }

    /// Runs the state machine until an op completes or the input is used up.
    fn step(&mut self, input: &[u8], at: &mut usize) -> Result<Option<Found>, ProtocolError> {
        while *at < input.len() {
            let i = *at;
            match &mut self.state {
                State::Name { len: 0, .. } => {
                    if let Some(found) = self.whole_op(input, at)? {
                        return Ok(Some(found));
                    }
                    if *at != i {
                        continue;
                    }
                    self.name_byte(input[i])?;
                    *at += 1;
                }
                State::Name { .. } => {
                    self.name_byte(input[i])?;
                    *at += 1;
                }
                State::NeedSpace(op) => {
                    if !is_blank(input[i]) {
                        return Err(ProtocolError::UnknownOperation);
                    }
                    self.state = State::Blanks(*op);
                    *at += 1;
                }
                State::Blanks(op) => {
                    if is_blank(input[i]) {
                        *at += 1;
                    } else {
                        self.state = State::Args(*op);
                    }
                }
                State::Args(op) => {
                    let op = *op;
                    let rest = &input[i..];
                    let max = self.limits.max_control_line;
                    let Some(end) = memchr(b'\n', rest) else {
                        // Refused before it is copied, so a flood of
                        // argument bytes never grows the buffer.
                        let ends_cr = rest.last() == Some(&b'\r');
                        if self.line.len() + rest.len() - usize::from(ends_cr) > max {
                            return Err(ProtocolError::MaxControlLine);
                        }
                        self.line.extend_from_slice(rest);
                        *at = input.len();
                        continue;
                    };
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
                    *at += end + 1;
                    self.state = START;
                    let span = Span {
                        buf: Buf::Line,
                        start: 0,
                        end: self.line.len(),
                    };
                    match self.read_line(op, &self.line, span)? {
                        Line::Op(found) => {
                            self.lent = true;
                            return Ok(Some(found));
                        }
                        Line::Msg(msg) => {
                            let msg = self.keep_names(input, msg);
                            self.line.clear();
                            self.state = State::Payload(msg);
                        }
                        Line::Ignored => self.line.clear(),
                    }
                }
                State::Rest(op) => {
                    let op = *op;
                    let Some(end) = memchr(b'\n', &input[i..]) else {
                        *at = input.len();
                        continue;
                    };
                    self.state = START;
                    *at += end + 1;
                    match op {
                        Op::Ping => return Ok(Some(Found::Ping)),
                        Op::Pong => return Ok(Some(Found::Pong)),
                        _ => {}
                    }
                }
                State::Payload(msg) => {
                    let msg = *msg;
                    let want = msg.size + 2 - self.body.len();
                    if self.body.is_empty() && input.len() - i >= want {
                        // The whole payload is in this input: borrowed.
                        *at += want;
                        self.state = START;
                        self.lent = true;
                        return Ok(Some(finish_msg(msg, input, Buf::Input, i)?));
                    }
                    let take = want.min(input.len() - i);
                    self.body.extend_from_slice(&input[i..i + take]);
                    *at += take;
                    if take == want {
                        self.state = START;
                        self.lent = true;
                        return Ok(Some(finish_msg(msg, &self.body, Buf::Body, 0)?));
                    }
                }
                State::Failed(err) => return Err(err.clone()),
            }
        }
        Ok(None)
    }

    /// One byte of an op name.
    fn name_byte(&mut self, byte: u8) -> Result<(), ProtocolError> {
        let State::Name { buf, len } = &mut self.state else {
            unreachable!("called in the Name state")
        };
        let byte = byte.to_ascii_uppercase();
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
        Ok(())
    }

    /// The fast path, at the start of an op: when the op's whole line is in
    /// `input` and it is one of the frequent ops, reads it without copying;
    /// a message whose payload is in `input` too is complete. Otherwise
    /// leaves `*at` alone (the byte-wise states take over) or, for a message
    /// whose payload is cut, moves on to reading that payload.
    fn whole_op(&mut self, input: &[u8], at: &mut usize) -> Result<Option<Found>, ProtocolError> {
        let start = *at;
        let Some(nl) = memchr(b'\n', &input[start..]) else {
            return Ok(None);
        };
        let line = &input[start..start + nl];
        let Some((op, name_len)) = frequent_op(line) else {
            return Ok(None);
        };
        if matches!(op, Op::Ping | Op::Pong) {
            *at = start + nl + 1;
            return Ok(Some(if op == Op::Ping {
                Found::Ping
            } else {
                Found::Pong
            }));
        }
        // The others need a blank after their name; without one the
        // byte-wise states give nats-server's error.
        let args = &line[name_len..];
        if !args.first().is_some_and(|&b| is_blank(b)) {
            return Ok(None);
        }
        let blanks = args.iter().take_while(|&&b| is_blank(b)).count();
        let args_start = start + name_len + blanks;
        let mut args_end = start + nl;
        if args_end > args_start && input[args_end - 1] == b'\r' {
            args_end -= 1;
        }
        if args_end - args_start > self.limits.max_control_line {
            return Err(ProtocolError::MaxControlLine);
        }
        let span = Span {
            buf: Buf::Input,
            start: args_start,
            end: args_end,
        };
        *at = start + nl + 1;
        match self.read_line(op, &input[args_start..args_end], span)? {
            Line::Op(found) => Ok(Some(found)),
            Line::Msg(msg) => {
                let body = *at;
                if input.len() - body >= msg.size + 2 {
                    *at = body + msg.size + 2;
                    return finish_msg(msg, input, Buf::Input, body).map(Some);
                }
                let msg = self.keep_names(input, msg);
                self.state = State::Payload(msg);
                Ok(None)
            }
            Line::Ignored => Ok(None),
        }
    }

    /// Copies a message's names into `names`, for a payload that is cut.
    fn keep_names(&mut self, input: &[u8], msg: MsgLine) -> MsgLine {
        let source = match msg.subject.buf {
            Buf::Input => input,
            _ => &self.line[..],
        };
        self.names.clear();
        let mut keep = |span: Span| {
            let start = self.names.len();
            self.names.extend_from_slice(&source[span.start..span.end]);
            Span {
                buf: Buf::Names,
                start,
                end: self.names.len(),
            }
        };
        let subject = keep(msg.subject);
        let reply = msg.reply.map(&mut keep);
        self.body.reserve_exact(msg.size + 2);
        MsgLine {
            subject,
            reply,
            ..msg
        }
    }

    /// Acts on a complete argument line (without its line end) that `span`
    /// locates, and says what it is.
    fn read_line(&self, op: Op, line: &[u8], span: Span) -> Result<Line, ProtocolError> {
        match op {
            Op::Pub | Op::HPub => {
                let (args, count) = split_args(line);
                let (subject, reply, sizes) = match (op, count) {
                    (Op::Pub, 2) | (Op::HPub, 3) => (args[0], None, &args[1..count]),
                    (Op::Pub, 3) | (Op::HPub, 4) => (args[0], Some(args[1]), &args[2..count]),
                    _ => return Err(ProtocolError::Malformed("PUB arguments")),
                };
                let size_of = |(start, end): (usize, usize)| parse_size(&line[start..end]);
                let (header_len, size) = if op == Op::HPub {
                    let header =
                        size_of(sizes[0]).ok_or(ProtocolError::Malformed("HPUB header size"))?;
                    let total =
                        size_of(sizes[1]).ok_or(ProtocolError::Malformed("HPUB total size"))?;
                    if header > total {
                        return Err(ProtocolError::Malformed("HPUB header size over total"));
                    }
                    (Some(header), total)
                } else {
                    let size = size_of(sizes[0]).ok_or(ProtocolError::Malformed("PUB size"))?;
                    (None, size)
                };
                if size > self.limits.max_payload {
                    return Err(ProtocolError::MaxPayload);
                }
                Ok(Line::Msg(MsgLine {
                    subject: name(line, span, subject)?,
                    reply: reply.map(|reply| name(line, span, reply)).transpose()?,
                    header_len,
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
                Ok(Line::Op(Found::Sub {
                    subject: name(line, span, subject)?,
                    queue: queue.map(|queue| name(line, span, queue)).transpose()?,
                    sid: name(line, span, sid)?,
                }))
            }
            Op::Unsub => {
                let (args, count) = split_args(line);
                let (sid, max) = match count {
                    1 => (args[0], None),
                    // nats-server reads a garbage maximum as "unsubscribe now".
                    2 => (
                        args[0],
                        parse_size(&line[args[1].0..args[1].1]).map(|max| max as u64),
                    ),
                    _ => return Err(ProtocolError::Malformed("UNSUB arguments")),
                };
                Ok(Line::Op(Found::Unsub {
                    sid: name(line, span, sid)?,
                    max,
                }))
            }
            Op::Connect => {
                let connect: Connect = serde_json::from_slice(line)
                    .map_err(|_| ProtocolError::Malformed("CONNECT JSON"))?;
                Ok(Line::Op(Found::Connect(Box::new(connect))))
            }
            Op::Err => Ok(Line::Op(Found::Err(span))),
            // nats-server accepts and ignores INFO from clients.
            Op::Info => Ok(Line::Ignored),
            Op::Ping | Op::Pong | Op::Ok => unreachable!("these ops take no arguments"),
        }
    }
}

/// The op a complete line starts with, and its name's length, for the ops
/// the fast path reads: `PUB`, `HPUB`, `SUB`, `UNSUB`, `PING`, `PONG`.
fn frequent_op(line: &[u8]) -> Option<(Op, usize)> {
    let upper = |at: usize| line.get(at).map(u8::to_ascii_uppercase);
    match (upper(0)?, upper(1)?, upper(2)?) {
        (b'P', b'U', b'B') => Some((Op::Pub, 3)),
        (b'S', b'U', b'B') => Some((Op::Sub, 3)),
        (b'H', b'P', b'U') if upper(3) == Some(b'B') => Some((Op::HPub, 4)),
        (b'P', b'I', b'N') if upper(3) == Some(b'G') => Some((Op::Ping, 4)),
        (b'P', b'O', b'N') if upper(3) == Some(b'G') => Some((Op::Pong, 4)),
        (b'U', b'N', b'S') if line.len() >= 5 && line[..5].eq_ignore_ascii_case(b"UNSUB") => {
            Some((Op::Unsub, 5))
        }
        _ => None,
    }
}

/// The span of the name at `start..end` of `line`, which `span` locates;
/// names must be UTF-8.
fn name(line: &[u8], span: Span, (start, end): (usize, usize)) -> Result<Span, ProtocolError> {
    std::str::from_utf8(&line[start..end])
        .map_err(|_| ProtocolError::Malformed("non-UTF-8 name"))?;
    Ok(span.sub(start, end))
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

/// The message whose payload (and `\r\n`) starts at `bytes[start..]`, which
/// is buffer `buf`.
fn finish_msg(msg: MsgLine, bytes: &[u8], buf: Buf, start: usize) -> Result<Found, ProtocolError> {
    let end = start + msg.size;
    if bytes[end..end + 2] != *b"\r\n" {
        return Err(ProtocolError::UnknownOperation);
    }
    let payload = Span { buf, start, end };
    Ok(match msg.header_len {
        None => Found::Msg {
            subject: msg.subject,
            reply: msg.reply,
            headers: None,
            payload,
        },
        Some(header_len) => Found::Msg {
            subject: msg.subject,
            reply: msg.reply,
            headers: Some(payload.sub(0, header_len)),
            payload: payload.sub(header_len, msg.size),
        },
    })
}

fn is_blank(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

/// Splits arguments on blanks (and stray `\r`/`\n`, as nats-server's
/// `splitArg` does), as `start..end` positions. No op takes more than four,
/// so a fifth means malformed: the count is then 5 and the array holds the
/// first five.
fn split_args(line: &[u8]) -> ([(usize, usize); 5], usize) {
    let mut args = [(0, 0); 5];
    let mut count = 0;
    let mut start = None;
    for (at, &byte) in line.iter().enumerate() {
        let separator = matches!(byte, b' ' | b'\t' | b'\r' | b'\n');
        match (start, separator) {
            (None, false) => start = Some(at),
            (Some(from), true) => {
                if count == args.len() {
                    return (args, count);
                }
                args[count] = (from, at);
                count += 1;
                start = None;
            }
            _ => {}
        }
    }
    if let Some(from) = start {
        if count < args.len() {
            args[count] = (from, line.len());
            count += 1;
        }
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
        let line = b" a\tb  c ";
        let (args, count) = split_args(line);
        assert_eq!(count, 3);
        let args: Vec<&[u8]> = args[..3].iter().map(|&(s, e)| &line[s..e]).collect();
        assert_eq!(args, [&b"a"[..], b"b", b"c"]);
        assert_eq!(split_args(b"a b c d e f g").1, 5);
    }
}
