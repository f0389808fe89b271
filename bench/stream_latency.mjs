// The latency half of bench/stream.py, in Node: one event loop reads the
// SSE clients' sockets several times faster than Python's, so less of the
// measured latency is the load generator's own. Prints Markdown rows.
// Env: FLAGBASE_URL, FLAGBASE_TOKEN (a session), CLIENTS ("1,100,1000"),
// WRITES (50).
import net from 'node:net';

const base = new URL(process.env.FLAGBASE_URL);
const token = process.env.FLAGBASE_TOKEN;
const counts = (process.env.CLIENTS ?? '1,100,1000').split(',').map(Number);
const writes = Number(process.env.WRITES ?? 50);
const VERSION = /"version":(\d+)/;

function client() {
  const c = { seen: new Map(), waiters: new Map(), buf: '' };
  c.ready = new Promise((resolve) => (c.onReady = resolve));
  c.socket = net.connect(Number(base.port), base.hostname, () => {
    c.socket.write(
      `GET /api/v1/stream HTTP/1.1\r\nHost: ${base.host}\r\nAuthorization: Bearer ${token}\r\n\r\n`,
    );
  });
  c.socket.setEncoding('utf8');
  c.socket.on('data', (chunk) => {
    const now = performance.now();
    c.buf += chunk;
    const blocks = c.buf.split('\n\n');
    c.buf = blocks.pop();
    for (const block of blocks) {
      if (block.includes('event: snapshot')) c.onReady();
      else if (block.includes('event: flag_updated')) {
        const version = Number(VERSION.exec(block)[1]);
        c.seen.set(version, now);
        c.waiters.get(version)?.();
      }
    }
  });
  c.socket.on('error', () => {});
  c.waitFor = (version) =>
    c.seen.has(version) ? Promise.resolve() : new Promise((r) => c.waiters.set(version, r));
  return c;
}

function pct(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.round((p / 100) * (sorted.length - 1)))];
}

for (const n of counts) {
  const clients = Array.from({ length: n }, client);
  await Promise.all(clients.map((c) => c.ready));
  const samples = [];
  for (let i = 0; i < writes; i++) {
    const t0 = performance.now();
    const r = await fetch(new URL('/api/v1/flags/bench/toggle', base), {
      method: 'PATCH',
      headers: { Authorization: `Bearer ${token}` },
    });
    const { version } = await r.json();
    await Promise.all(clients.map((c) => c.waitFor(version)));
    for (const c of clients) samples.push(c.seen.get(version) - t0);
  }
  for (const c of clients) c.socket.destroy();
  samples.sort((a, b) => a - b);
  console.log(
    `| ${n} | ${samples.length} | ${pct(samples, 50).toFixed(2)} | ${pct(samples, 99).toFixed(2)} | ${samples.at(-1).toFixed(2)} |`,
  );
  await new Promise((r) => setTimeout(r, 500));
}
