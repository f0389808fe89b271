//! Properties of the decoder on inputs no table lists: random bytes in random
//! splits never panic and never make it hold more than its limits allow, and
//! random valid op streams decode to the ops they encode however they are cut.

use bytes::Bytes;
use flagbase_bus::codec::{ClientOp, Decoder, Limits};
use proptest::prelude::*;
use proptest::sample::Index;

const LIMITS: Limits = Limits {
    max_control_line: 64,
    max_payload: 128,
};

/// Cuts `input` at the given points (sorted, duplicates allowed).
fn chunks<'a>(input: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
    points.sort_unstable();
    let mut out = Vec::new();
    let mut from = 0;
    for at in points {
        out.push(&input[from..at]);
        from = at;
    }
    out.push(&input[from..]);
    out
}

/// Fragments that reach deep states of the parser far more often than
/// uniformly random bytes do.
fn fragment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..8),
        prop::sample::select(vec![
            &b"PUB "[..],
            b"HPUB ",
            b"SUB ",
            b"UNSUB ",
            b"CONNECT ",
            b"PING",
            b"PONG",
            b"+OK",
            b"-ERR ",
            b"INFO ",
            b"\r\n",
            b"\r",
            b"\n",
            b" ",
            b"\t",
            b"foo",
            b"foo.*",
            b">",
            b"0",
            b"5",
            b"12",
            b"-1",
            b"129",
            b"999999999",
            b"1000000000",
            b"{}",
            b"{\"verbose\":false}",
            b"hello",
        ])
        .prop_map(<[u8]>::to_vec),
    ]
}

fn noisy_stream() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(fragment(), 0..64).prop_map(|parts| parts.concat())
}

/// A valid op as a client could send it, and the op it must decode to.
fn valid_op() -> impl Strategy<Value = ClientOp> {
    let name = "[a-z0-9_]{1,6}(\\.[a-z0-9_*>]{1,4}){0,2}";
    prop_oneof![
        Just(ClientOp::Ping),
        Just(ClientOp::Pong),
        (
            name,
            prop::option::of(name),
            prop::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(|(subject, reply, payload)| ClientOp::Pub {
                subject,
                reply,
                payload: Bytes::from(payload),
            }),
        (
            name,
            prop::option::of(name),
            prop::collection::vec(any::<u8>(), 0..20),
            prop::collection::vec(any::<u8>(), 0..20)
        )
            .prop_map(|(subject, reply, headers, payload)| ClientOp::HPub {
                subject,
                reply,
                headers: Bytes::from(headers),
                payload: Bytes::from(payload),
            }),
        (name, prop::option::of("[a-z]{1,5}"), "[0-9]{1,4}").prop_map(|(subject, queue, sid)| {
            ClientOp::Sub {
                subject,
                queue,
                sid,
            }
        }),
        ("[0-9]{1,4}", prop::option::of(0u64..1000))
            .prop_map(|(sid, max)| ClientOp::Unsub { sid, max }),
    ]
}

/// Encodes `op` as a client would, with the given op-name case and blanks.
fn encode(op: &ClientOp, lower: bool, blank: &str, out: &mut Vec<u8>) {
    let name = |n: &str| {
        if lower {
            n.to_lowercase()
        } else {
            n.to_string()
        }
    };
    let line = match op {
        ClientOp::Ping => name("PING"),
        ClientOp::Pong => name("PONG"),
        ClientOp::Pub {
            subject,
            reply,
            payload,
        } => {
            let reply = reply
                .as_ref()
                .map(|r| format!("{r}{blank}"))
                .unwrap_or_default();
            format!(
                "{}{blank}{subject}{blank}{reply}{}",
                name("PUB"),
                payload.len()
            )
        }
        ClientOp::HPub {
            subject,
            reply,
            headers,
            payload,
        } => {
            let reply = reply
                .as_ref()
                .map(|r| format!("{r}{blank}"))
                .unwrap_or_default();
            let total = headers.len() + payload.len();
            format!(
                "{}{blank}{subject}{blank}{reply}{}{blank}{total}",
                name("HPUB"),
                headers.len()
            )
        }
        ClientOp::Sub {
            subject,
            queue,
            sid,
        } => {
            let queue = queue
                .as_ref()
                .map(|q| format!("{q}{blank}"))
                .unwrap_or_default();
            format!("{}{blank}{subject}{blank}{queue}{sid}", name("SUB"))
        }
        ClientOp::Unsub { sid, max } => {
            let max = max.map(|m| format!("{blank}{m}")).unwrap_or_default();
            format!("{}{blank}{sid}{max}", name("UNSUB"))
        }
        ClientOp::Connect(_) | ClientOp::Err(_) => unreachable!("not generated"),
    };
    out.extend_from_slice(line.as_bytes());
    out.extend_from_slice(b"\r\n");
    match op {
        ClientOp::Pub { payload, .. } => out.extend_from_slice(payload),
        ClientOp::HPub {
            headers, payload, ..
        } => {
            out.extend_from_slice(headers);
            out.extend_from_slice(payload);
        }
        _ => return,
    }
    out.extend_from_slice(b"\r\n");
}

proptest! {
    #[test]
    fn random_bytes_in_random_splits_never_panic_or_overbuffer(
        input in prop_oneof![noisy_stream(), prop::collection::vec(any::<u8>(), 0..512)],
        cuts in prop::collection::vec(any::<Index>(), 0..12),
    ) {
        let mut decoder = Decoder::new(LIMITS);
        let mut out = Vec::new();
        for chunk in chunks(&input, &cuts) {
            let result = decoder.decode(chunk, &mut out);
            // A control line holds at most max_control_line + 1 bytes, a
            // message at most max_payload + 2; never both at once.
            prop_assert!(decoder.buffered() <= LIMITS.max_payload + 2);
            if result.is_err() {
                // Refused once, refused for good, and nothing more is decoded.
                let decoded = out.len();
                prop_assert!(decoder.decode(b"PING\r\n", &mut out).is_err());
                prop_assert_eq!(out.len(), decoded);
                break;
            }
        }
    }

    #[test]
    fn valid_streams_decode_to_their_ops_however_they_are_cut(
        ops in prop::collection::vec(valid_op(), 0..24),
        lower in any::<bool>(),
        blank in prop::sample::select(vec![" ", "\t", "  ", " \t "]),
        cuts in prop::collection::vec(any::<Index>(), 0..12),
    ) {
        let mut input = Vec::new();
        for op in &ops {
            encode(op, lower, blank, &mut input);
        }
        let mut decoder = Decoder::new(LIMITS);
        let mut out = Vec::new();
        for chunk in chunks(&input, &cuts) {
            decoder.decode(chunk, &mut out).unwrap();
        }
        prop_assert_eq!(out, ops);
        prop_assert_eq!(decoder.buffered(), 0);
    }
}
