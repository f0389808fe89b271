//! A lossless pub→sub load generator over raw sockets, for comparing the bus
//! with nats-server: one publisher, one subscriber, counts every byte that
//! arrives. Usage: `loadgen <host:port> <payload bytes> <messages>`

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

fn connect(addr: &str, ops: &str) -> (BufReader<TcpStream>, TcpStream) {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut info = String::new();
    reader.read_line(&mut info).unwrap();
    let mut writer = stream;
    writer.write_all(ops.as_bytes()).unwrap();
    let mut pong = String::new();
    reader.read_line(&mut pong).unwrap();
    assert_eq!(pong, "PONG\r\n", "no PONG after the setup ops");
    (reader, writer)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, size, count] = &args[..] else {
        panic!("usage: loadgen <host:port> <payload bytes> <messages>");
    };
    let size: usize = size.parse().unwrap();
    let count: usize = count.parse().unwrap();
    let payload = "x".repeat(size);
    let msg_len = format!("MSG bench 1 {size}\r\n{payload}\r\n").len();
    let expected = msg_len * count;

    let (mut sub, _sub_writer) = connect(
        addr,
        "CONNECT {\"verbose\":false}\r\nSUB bench 1\r\nPING\r\n",
    );
    let (_, mut publisher) = connect(addr, "CONNECT {\"verbose\":false}\r\nPING\r\n");

    let one = format!("PUB bench {size}\r\n{payload}\r\n");
    let batch_len = (64 * 1024 / one.len()).max(1);
    let batch = one.repeat(batch_len);
    let start = Instant::now();
    let sender = std::thread::spawn(move || {
        let mut sent = 0;
        while sent < count {
            let n = batch_len.min(count - sent);
            publisher
                .write_all(&batch.as_bytes()[..n * one.len()])
                .unwrap();
            sent += n;
        }
        publisher
    });
    let mut received = 0;
    let mut buffer = vec![0u8; 256 * 1024];
    while received < expected {
        let n = sub.read(&mut buffer).unwrap();
        assert!(
            n > 0,
            "subscriber closed after {received} of {expected} bytes"
        );
        received += n;
    }
    let elapsed = start.elapsed();
    let _ = sender.join();
    println!(
        "{size} B x {count}: {:.0} msg/s ({:.3} s), lossless",
        count as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
}
