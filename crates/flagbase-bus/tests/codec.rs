//! Edge cases of the client-protocol decoder, as tables: a sample stream split
//! at every byte position, many ops per read, case and blanks, and every way
//! nats-server refuses a stream.

use bytes::Bytes;
use flagbase_bus::codec::{ClientOp, Decoder, Limits, ProtocolError, MAX_PAYLOAD};

const SAMPLE: &[u8] = b"CONNECT {\"verbose\":false,\"headers\":true,\"no_responders\":true}\r\n\
PING\r\n\
sub foo.* 1\r\n\
SUB\tbar  q\t2\r\n\
PUB foo.a 5\r\nhello\r\n\
pub foo.b reply.x 0\r\n\r\n\
HPUB foo.h 18 23\r\nNATS/1.0\r\nA: b\r\n\r\nhello\r\n\
hpub foo.h _INBOX.1 12 12\r\nNATS/1.0\r\n\r\n\r\n\
UNSUB 1 10\r\n\
unsub 2\r\n\
PONG\r\n\
+OK\r\n\
INFO {}\r\n\
PING\r\n";

fn sample_ops() -> Vec<ClientOp> {
    let connect = match decode_all(
        b"CONNECT {\"verbose\":false,\"headers\":true,\"no_responders\":true}\r\n",
    ) {
        Ok(mut ops) => ops.remove(0),
        Err(err) => panic!("{err}"),
    };
    vec![
        connect,
        ClientOp::Ping,
        ClientOp::Sub {
            subject: "foo.*".into(),
            queue: None,
            sid: "1".into(),
        },
        ClientOp::Sub {
            subject: "bar".into(),
            queue: Some("q".into()),
            sid: "2".into(),
        },
        ClientOp::Pub {
            subject: "foo.a".into(),
            reply: None,
            payload: Bytes::from_static(b"hello"),
        },
        ClientOp::Pub {
            subject: "foo.b".into(),
            reply: Some("reply.x".into()),
            payload: Bytes::new(),
        },
        ClientOp::HPub {
            subject: "foo.h".into(),
            reply: None,
            headers: Bytes::from_static(b"NATS/1.0\r\nA: b\r\n\r\n"),
            payload: Bytes::from_static(b"hello"),
        },
        ClientOp::HPub {
            subject: "foo.h".into(),
            reply: Some("_INBOX.1".into()),
            headers: Bytes::from_static(b"NATS/1.0\r\n\r\n"),
            payload: Bytes::new(),
        },
        ClientOp::Unsub {
            sid: "1".into(),
            max: Some(10),
        },
        ClientOp::Unsub {
            sid: "2".into(),
            max: None,
        },
        ClientOp::Pong,
        ClientOp::Ping,
    ]
}

fn decode_chunks(chunks: &[&[u8]], limits: Limits) -> Result<Vec<ClientOp>, ProtocolError> {
    let mut decoder = Decoder::new(limits);
    let mut out = Vec::new();
    for chunk in chunks {
        decoder.decode(chunk, &mut out)?;
    }
    Ok(out)
}

fn decode_all(input: &[u8]) -> Result<Vec<ClientOp>, ProtocolError> {
    decode_chunks(&[input], Limits::default())
}

#[test]
fn sample_stream_decodes_in_one_read() {
    assert_eq!(decode_all(SAMPLE).unwrap(), sample_ops());
}

#[test]
fn connect_json_is_read_with_nats_server_defaults() {
    let Ok(ops) =
        decode_all(b"CONNECT {\"verbose\":false,\"headers\":true,\"no_responders\":true}\r\n")
    else {
        panic!("CONNECT refused");
    };
    let ClientOp::Connect(connect) = &ops[0] else {
        panic!("not a CONNECT: {ops:?}");
    };
    assert!(!connect.verbose && connect.pedantic && connect.echo);
    assert!(connect.headers && connect.no_responders);

    let ops = decode_all(b"CONNECT{\"token\":\"fbk_1\",\"echo\":false}\r\n").unwrap();
    let ClientOp::Connect(connect) = &ops[0] else {
        panic!("not a CONNECT: {ops:?}");
    };
    assert_eq!(connect.auth_token.as_deref(), Some("fbk_1"));
    assert!(connect.verbose && !connect.echo && !connect.headers);
}

#[test]
fn sample_stream_split_at_every_byte_position() {
    let expected = sample_ops();
    for at in 0..=SAMPLE.len() {
        let (a, b) = SAMPLE.split_at(at);
        assert_eq!(
            decode_chunks(&[a, b], Limits::default()).unwrap(),
            expected,
            "split at {at}"
        );
    }
}

#[test]
fn sample_stream_split_at_every_pair_of_positions() {
    let expected = sample_ops();
    for i in 0..=SAMPLE.len() {
        for j in i..=SAMPLE.len() {
            let chunks = [&SAMPLE[..i], &SAMPLE[i..j], &SAMPLE[j..]];
            assert_eq!(
                decode_chunks(&chunks, Limits::default()).unwrap(),
                expected,
                "split at {i}, {j}"
            );
        }
    }
}

#[test]
fn sample_stream_fed_one_byte_at_a_time() {
    let chunks: Vec<&[u8]> = SAMPLE.chunks(1).collect();
    assert_eq!(
        decode_chunks(&chunks, Limits::default()).unwrap(),
        sample_ops()
    );
}

#[test]
fn many_ops_in_one_read() {
    let input = b"PING\r\nPUB a 1\r\nx\r\n".repeat(1000);
    let ops = decode_all(&input).unwrap();
    assert_eq!(ops.len(), 2000);
    assert_eq!(ops[1998], ClientOp::Ping);
}

#[test]
fn op_names_are_case_insensitive_and_blanks_are_spaces_or_tabs() {
    let table: &[(&[u8], ClientOp)] = &[
        (b"ping\r\n", ClientOp::Ping),
        (b"PiNg\r\n", ClientOp::Ping),
        (b"pOnG\r\n", ClientOp::Pong),
        // PING and PONG ignore anything up to the end of their line.
        (b"PING whatever\r\n", ClientOp::Ping),
        // A bare LF ends a line, as in nats-server.
        (b"PING\n", ClientOp::Ping),
        (
            b"sUb\t\tfoo \t g\t 9\r\n",
            ClientOp::Sub {
                subject: "foo".into(),
                queue: Some("g".into()),
                sid: "9".into(),
            },
        ),
        (
            b"Pub\tfoo\t\t2 \r\nhi\r\n",
            ClientOp::Pub {
                subject: "foo".into(),
                reply: None,
                payload: Bytes::from_static(b"hi"),
            },
        ),
        (
            b"UnSuB\t3\t0\n",
            ClientOp::Unsub {
                sid: "3".into(),
                max: Some(0),
            },
        ),
        // nats-server reads a garbage maximum as "unsubscribe now".
        (
            b"UNSUB 3 -5\r\n",
            ClientOp::Unsub {
                sid: "3".into(),
                max: None,
            },
        ),
        (b"-ERR 'boom'\r\n", ClientOp::Err("'boom'".into())),
    ];
    for (input, op) in table {
        assert_eq!(
            decode_all(input).as_deref(),
            Ok(&[op.clone()][..]),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    assert_eq!(decode_all(b"+ok\r\ninfo {}\r\n"), Ok(vec![]));
}

#[test]
fn refused_streams_get_nats_server_errors() {
    use ProtocolError::*;
    let long_arg = format!("SUB {} 1\r\n", "a".repeat(4095));
    let table: &[(&[u8], ProtocolError)] = &[
        (b"FOO\r\n", UnknownOperation),
        (b"\r\n", UnknownOperation),
        (b" PING\r\n", UnknownOperation),
        (b"MSG foo 1 2\r\nhi\r\n", UnknownOperation),
        (b"PUBX foo 1\r\n", UnknownOperation),
        (b"PUB\r\n", UnknownOperation),
        (b"UNSUB\r\n", UnknownOperation),
        (b"\x00", UnknownOperation),
        (b"\xff\xfe", UnknownOperation),
        // The payload must be followed by CRLF exactly.
        (b"PUB foo 3\r\nabcd\r\n", UnknownOperation),
        (b"PUB foo 3\r\nabc\n\n", UnknownOperation),
        (b"PUB foo -1\r\n", Malformed("PUB size")),
        (b"PUB foo +1\r\n", Malformed("PUB size")),
        (b"PUB foo 1x\r\n", Malformed("PUB size")),
        (b"PUB foo 1000000000\r\n", Malformed("PUB size")),
        (b"PUB foo 18446744073709551617\r\n", Malformed("PUB size")),
        (b"PUB foo 999999999\r\n", MaxPayload),
        (b"PUB foo 1048577\r\n", MaxPayload),
        (b"HPUB foo 1 1048577\r\n", MaxPayload),
        (b"PUB foo\r\n", Malformed("PUB arguments")),
        (b"PUB a b c 1\r\n", Malformed("PUB arguments")),
        (b"HPUB foo 5\r\n", Malformed("PUB arguments")),
        (
            b"HPUB foo 10 5\r\n",
            Malformed("HPUB header size over total"),
        ),
        (b"HPUB foo -1 5\r\n", Malformed("HPUB header size")),
        (b"HPUB foo 1 -5\r\n", Malformed("HPUB total size")),
        (b"SUB foo\r\n", Malformed("SUB arguments")),
        (b"SUB a b c d\r\n", Malformed("SUB arguments")),
        (b"UNSUB 1 2 3\r\n", Malformed("UNSUB arguments")),
        (b"CONNECT\r\n", Malformed("CONNECT JSON")),
        (b"CONNECT {bad\r\n", Malformed("CONNECT JSON")),
        (
            b"CONNECT {\"verbose\":\"yes\"}\r\n",
            Malformed("CONNECT JSON"),
        ),
        (b"SUB \xc3\x28 1\r\n", Malformed("non-UTF-8 name")),
        (long_arg.as_bytes(), MaxControlLine),
    ];
    for (input, expected) in table {
        assert_eq!(
            decode_all(input),
            Err(expected.clone()),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn error_texts_are_nats_servers() {
    assert_eq!(
        ProtocolError::UnknownOperation.err_text(),
        Some("Unknown Protocol Operation")
    );
    assert_eq!(
        ProtocolError::MaxControlLine.err_text(),
        Some("maximum control line exceeded")
    );
    assert_eq!(
        ProtocolError::MaxPayload.err_text(),
        Some("Maximum Payload Violation")
    );
    // nats-server closes on argument errors without an -ERR.
    assert_eq!(ProtocolError::Malformed("PUB size").err_text(), None);
}

#[test]
fn control_line_of_exactly_the_limit_is_accepted_even_when_split_before_its_lf() {
    // "SUB " + 4094-byte subject + " 1": 4096 bytes of arguments.
    let line = format!("SUB {} 1\r\n", "a".repeat(4094));
    let bytes = line.as_bytes();
    let (head, tail) = bytes.split_at(bytes.len() - 1);
    let ops = decode_chunks(&[head, tail], Limits::default()).unwrap();
    assert!(matches!(&ops[..], [ClientOp::Sub { subject, .. }] if subject.len() == 4094));
}

#[test]
fn long_control_line_is_refused_before_its_end_arrives() {
    let mut decoder = Decoder::new(Limits::default());
    let mut out = Vec::new();
    decoder.decode(b"PUB ", &mut out).unwrap();
    decoder.decode(&[b'a'; 4096], &mut out).unwrap();
    assert_eq!(
        decoder.decode(b"a", &mut out),
        Err(ProtocolError::MaxControlLine)
    );
    assert_eq!(decoder.buffered(), 0, "the refused line is dropped");
}

#[test]
fn ops_before_a_fault_are_kept_and_the_fault_is_sticky() {
    let mut decoder = Decoder::new(Limits::default());
    let mut out = Vec::new();
    assert_eq!(
        decoder.decode(b"PING\r\nSUB a 1\r\nNOPE\r\n", &mut out),
        Err(ProtocolError::UnknownOperation)
    );
    assert_eq!(out.len(), 2);
    assert_eq!(
        decoder.decode(b"PING\r\n", &mut out),
        Err(ProtocolError::UnknownOperation)
    );
    assert_eq!(out.len(), 2);
}

#[test]
fn payload_of_exactly_max_payload_is_accepted_and_buffering_stays_bounded() {
    let limits = Limits::default();
    let mut decoder = Decoder::new(limits);
    let mut out = Vec::new();
    decoder
        .decode(format!("PUB big {MAX_PAYLOAD}\r\n").as_bytes(), &mut out)
        .unwrap();
    let payload = vec![b'x'; MAX_PAYLOAD];
    for chunk in payload.chunks(65536) {
        decoder.decode(chunk, &mut out).unwrap();
        assert!(decoder.buffered() <= MAX_PAYLOAD + 2);
    }
    assert!(out.is_empty());
    decoder.decode(b"\r\n", &mut out).unwrap();
    assert!(matches!(&out[..], [ClientOp::Pub { payload, .. }] if payload.len() == MAX_PAYLOAD));
    assert_eq!(decoder.buffered(), 0);
}

#[test]
fn endless_blanks_and_endless_ping_lines_buffer_nothing() {
    let mut decoder = Decoder::new(Limits::default());
    let mut out = Vec::new();
    decoder.decode(b"PUB", &mut out).unwrap();
    for _ in 0..100 {
        decoder.decode(&[b' '; 10_000], &mut out).unwrap();
        assert_eq!(decoder.buffered(), 0);
    }
    let mut decoder = Decoder::new(Limits::default());
    decoder.decode(b"PING", &mut out).unwrap();
    for _ in 0..100 {
        decoder.decode(&[b'z'; 10_000], &mut out).unwrap();
        assert_eq!(decoder.buffered(), 0);
    }
    decoder.decode(b"\n", &mut out).unwrap();
    assert_eq!(out, vec![ClientOp::Ping]);
}

#[test]
fn configured_limits_are_applied() {
    let limits = Limits {
        max_control_line: 8,
        max_payload: 4,
    };
    assert!(decode_chunks(&[b"PUB a 4\r\nabcd\r\n"], limits).is_ok());
    assert_eq!(
        decode_chunks(&[b"PUB a 5\r\n"], limits),
        Err(ProtocolError::MaxPayload)
    );
    assert!(decode_chunks(&[b"SUB abcdef 1\r\n"], limits).is_ok());
    assert_eq!(
        decode_chunks(&[b"SUB abcdefg 1\r\n"], limits),
        Err(ProtocolError::MaxControlLine)
    );
}
