// Interop: the official OpenFeature web SDK with the official OFREP web
// provider (static context, the kind that follows OFREP `eventStreams`),
// against a running Flagbase with a `client` token. Polling is off, so only
// the advertised change stream can tell the provider that a flag changed.
//
// Run by tests/integration/stream.rs, which creates the flag `beta` and
// passes FLAGBASE_URL, FLAGBASE_TOKEN (a client token) and FLAGBASE_ADMIN
// (a session that may toggle the flag). Node 20 needs
// --experimental-eventsource for the global EventSource the provider uses.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';

import { OpenFeature, ProviderEvents } from '@openfeature/web-sdk';
import { OFREPWebProvider } from '@openfeature/ofrep-web-provider';

const BASE_URL = process.env.FLAGBASE_URL?.replace(/\/+$/, '');
const TOKEN = process.env.FLAGBASE_TOKEN;
const ADMIN = process.env.FLAGBASE_ADMIN;

if (!BASE_URL || !TOKEN || !ADMIN) {
  throw new Error('set FLAGBASE_URL, FLAGBASE_TOKEN (a client token) and FLAGBASE_ADMIN');
}
if (typeof EventSource === 'undefined') {
  throw new Error('no global EventSource: run node with --experimental-eventsource (Node 20) or Node 22+');
}

after(async () => {
  await OpenFeature.close();
});

test('the web provider refetches when the advertised change stream says so', async () => {
  const provider = new OFREPWebProvider({
    baseUrl: BASE_URL,
    headers: [['Authorization', `Bearer ${TOKEN}`]],
    changeDetection: 'sse',
    pollInterval: 0,
    cacheMode: 'disabled',
  });
  await OpenFeature.setContext({ targetingKey: 'end-user-7' });
  await OpenFeature.setProviderAndWait(provider);
  const client = OpenFeature.getClient();
  assert.equal(client.getBooleanValue('beta', false), true, 'targeted, enabled');

  const changed = new Promise((resolve) =>
    client.addHandler(ProviderEvents.ConfigurationChanged, resolve),
  );
  // Give the provider's EventSource time to connect is not needed: the
  // stream URL carries the change number the first answer reflected, so a
  // toggle that lands before the connection is still announced.
  const toggled = await fetch(`${BASE_URL}/api/v1/flags/beta/toggle`, {
    method: 'PATCH',
    headers: { Authorization: `Bearer ${ADMIN}` },
  });
  assert.equal(toggled.status, 200);
  await changed;
  assert.equal(client.getBooleanValue('beta', true), false, 'the refetched value');
});
