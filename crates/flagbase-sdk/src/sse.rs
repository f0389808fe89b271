//! An incremental Server-Sent Events parser (the WHATWG "event stream"
//! interpretation), fed with whatever chunks the network delivers.
//!
//! Pure and bounded: a line longer than [`MAX_LINE`] or an event whose data
//! grows past [`MAX_EVENT`] is an error, so a broken or hostile server cannot
//! make the client buffer without limit.

/// Longest line accepted (a `snapshot` event is one `data:` line holding
/// every flag, so this is generous).
pub const MAX_LINE: usize = 64 << 20;
/// Largest event (sum of its `data:` lines).
pub const MAX_EVENT: usize = 64 << 20;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field; `message` when absent.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The last event id in force when the event was dispatched (ids stick
    /// across events, as the specification says).
    pub id: Option<String>,
}

/// What one chunk produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Events, in order.
    pub events: Vec<Event>,
    /// The last `retry:` hint, in milliseconds.
    pub retry_ms: Option<u64>,
    /// Whether a comment (a heartbeat) arrived.
    pub comment: bool,
}

/// The stream is malformed beyond what the specification tolerates.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event stream: {0}")]
pub struct SseError(&'static str);

/// Parser state across chunks.
#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    /// The previous chunk ended in `\r`: a `\n` starting the next one is
    /// the same line end.
    after_cr: bool,
    started: bool,
    event: String,
    data: String,
    has_data: bool,
    last_id: Option<String>,
}

impl Parser {
    /// A parser with no last event id.
    pub fn new() -> Self {
        Parser::default()
    }

    /// Feeds one chunk.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Parsed, SseError> {
        let mut out = Parsed::default();
        let mut rest = chunk;
        if self.after_cr {
            self.after_cr = false;
            if let Some(b'\n') = rest.first() {
                rest = &rest[1..];
            }
        }
        while let Some(i) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.push(&rest[..i])?;
            let crlf = rest[i] == b'\r';
            rest = &rest[i + 1..];
            if crlf {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    None => self.after_cr = true,
                    _ => {}
                }
            }
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, &mut out)?;
            self.line = line;
            self.line.clear();
        }
        self.push(rest)?;
        Ok(out)
    }

    fn push(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        if self.line.len() + bytes.len() > MAX_LINE {
            return Err(SseError("line too long"));
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn line_done(&mut self, raw: &[u8], out: &mut Parsed) -> Result<(), SseError> {
        let mut line = raw;
        if !self.started {
            self.started = true;
            // A UTF-8 byte order mark at the very start is ignored.
            if let Some(rest) = line.strip_prefix(b"\xEF\xBB\xBF") {
                line = rest;
            }
        }
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line[0] == b':' {
            out.comment = true;
            return Ok(());
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        let value = String::from_utf8_lossy(value);
        match name {
            b"event" => self.event = value.into_owned(),
            b"data" => {
                if self.data.len() + value.len() + 1 > MAX_EVENT {
                    return Err(SseError("event too large"));
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&value);
                self.has_data = true;
            }
            // An id holding NUL is ignored, as the specification says.
            b"id" if !value.contains('\0') => self.last_id = Some(value.into_owned()),
            b"retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                out.retry_ms = value.parse().ok();
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Parsed) {
        let event = std::mem::take(&mut self.event);
        if !self.has_data {
            // An event with no data is not dispatched (the id still sticks).
            return;
        }
        self.has_data = false;
        out.events.push(Event {
            event: if event.is_empty() {
                "message".to_string()
            } else {
                event
            },
            data: std::mem::take(&mut self.data),
            id: self.last_id.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(chunks: &[&[u8]]) -> Vec<Event> {
        let mut p = Parser::new();
        chunks
            .iter()
            .flat_map(|c| p.feed(c).unwrap().events)
            .collect()
    }

    #[test]
    fn documented_stream() {
        let body = b"retry: 3000\n\nevent: snapshot\nid: 41\ndata: {\"seq\":41}\n\n: heartbeat\n\nevent: resync\ndata: {}\n\n";
        let mut p = Parser::new();
        let out = p.feed(body).unwrap();
        assert_eq!(out.retry_ms, Some(3000));
        assert!(out.comment);
        assert_eq!(out.events.len(), 2);
        assert_eq!(out.events[0].event, "snapshot");
        assert_eq!(out.events[0].id.as_deref(), Some("41"));
        assert_eq!(out.events[0].data, "{\"seq\":41}");
        assert_eq!(out.events[1].event, "resync");
        // Ids stick to later events.
        assert_eq!(out.events[1].id.as_deref(), Some("41"));
    }

    #[test]
    fn any_split_gives_the_same_events() {
        let body: &[u8] =
            b"\xEF\xBB\xBFevent: a\r\ndata: x\r\ndata:y\r\n\r\nid: 7\rdata: \xC3\xA9\r\rdata\n\n";
        let whole = all(&[body]);
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[0].data, "x\ny");
        assert_eq!(whole[1].data, "é");
        assert_eq!(whole[1].event, "message");
        assert_eq!(whole[2].data, "");
        for i in 0..body.len() {
            assert_eq!(all(&[&body[..i], &body[i..]]), whole, "split at {i}");
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(all(&bytes), whole);
    }

    #[test]
    fn unterminated_event_is_not_dispatched() {
        assert!(all(&[b"data: half"]).is_empty());
    }
}
