// Interop: the official OpenFeature Node server SDK with the official OFREP
// provider, evaluating flags served by a running Flagbase.
//
// Needs FLAGBASE_URL (e.g. http://127.0.0.1:8080) and FLAGBASE_TOKEN (an
// `fbk_` API token). The flags are created by the Rust integration test
// `tests/integration/ofrep_interop.rs`; see tests/interop/README.md.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { OpenFeature, ErrorCode } from '@openfeature/server-sdk';
import { OFREPProvider } from '@openfeature/ofrep-provider';

const BASE_URL = process.env.FLAGBASE_URL;
const TOKEN = process.env.FLAGBASE_TOKEN;

if (!BASE_URL || !TOKEN) {
  throw new Error('set FLAGBASE_URL and FLAGBASE_TOKEN (an fbk_ API token); see tests/interop/README.md');
}

const DOMAIN = 'flagbase-interop';
let client;

before(async () => {
  const provider = new OFREPProvider({
    baseUrl: BASE_URL.replace(/\/+$/, ''),
    headers: [['Authorization', `Bearer ${TOKEN}`]],
  });
  await OpenFeature.setProviderAndWait(DOMAIN, provider);
  client = OpenFeature.getClient(DOMAIN);
});

after(async () => {
  await OpenFeature.close();
});

/** Details must carry no error: a silent fallback to the default would pass. */
function ok(details) {
  assert.equal(details.errorCode, undefined, `unexpected error: ${JSON.stringify(details)}`);
  assert.equal(details.errorMessage, undefined, `unexpected error: ${JSON.stringify(details)}`);
  return details;
}

test('boolean flag: targeting rule matches', async () => {
  const d = ok(await client.getBooleanDetails('new-checkout-ui', false, { targetingKey: 'u1', role: 'developer' }));
  assert.equal(d.value, true);
  assert.equal(d.reason, 'TARGETING_MATCH');
  assert.equal(d.flagKey, 'new-checkout-ui');
});

test('boolean flag: no rule matches, default value', async () => {
  // The code default is `true`, so `false` can only come from the server.
  const d = ok(await client.getBooleanDetails('new-checkout-ui', true, { targetingKey: 'u1', role: 'user' }));
  assert.equal(d.value, false);
  // OFREP has no DEFAULT reason; Flagbase sends UNKNOWN (see README).
  assert.equal(d.reason, 'UNKNOWN');
  assert.equal(d.variant, 'false');
});

test('string flag: rule picks variant b', async () => {
  const d = ok(await client.getStringDetails('banner-text', 'code-default', { targetingKey: 'u1', country: 'NL' }));
  assert.equal(d.value, 'hi B');
  assert.equal(d.variant, 'b');
  assert.equal(d.reason, 'TARGETING_MATCH');
});

test('string flag: no rule matches, flag default', async () => {
  const d = ok(await client.getStringDetails('banner-text', 'code-default', { targetingKey: 'u1', country: 'DE' }));
  assert.equal(d.value, 'hello');
  assert.equal(d.reason, 'UNKNOWN');
  assert.equal(d.variant, '"hello"');
});

test('number flag: rule value', async () => {
  const d = ok(await client.getNumberDetails('max-items', -1, { targetingKey: 'u1', plan: 'pro' }));
  assert.equal(d.value, 50);
  assert.equal(d.reason, 'TARGETING_MATCH');
  assert.equal(d.variant, '50');
  const other = ok(await client.getNumberDetails('max-items', -1, { targetingKey: 'u1', plan: 'free' }));
  assert.equal(other.value, 10);
  assert.equal(other.reason, 'UNKNOWN');
  assert.equal(other.variant, '10');
});

test('object flag: rule value', async () => {
  const d = ok(await client.getObjectDetails('theme', {}, { targetingKey: 'u1', beta: 'true' }));
  assert.deepEqual(d.value, { color: 'red' });
  assert.equal(d.reason, 'TARGETING_MATCH');
  const other = ok(await client.getObjectDetails('theme', {}, { targetingKey: 'u1', beta: 'false' }));
  assert.deepEqual(other.value, { color: 'blue' });
  assert.equal(other.reason, 'UNKNOWN');
});

test('rollout flag: targeted user is in', async () => {
  const d = ok(await client.getBooleanDetails('new-checkout-flow', false, { targetingKey: 'user-1' }));
  assert.equal(d.value, true);
  assert.equal(d.reason, 'TARGETING_MATCH');
  assert.equal(d.variant, 'true');
});

test('rollout flag: user-42 lands in bucket 73, outside the 25% rollout', async () => {
  const d = ok(await client.getBooleanDetails('new-checkout-flow', true, { targetingKey: 'user-42' }));
  assert.equal(d.value, false);
  // Outside the rollout the flag's default is served: the engine's DEFAULT,
  // which OFREP spells UNKNOWN. SPLIT would say the split chose this value.
  assert.equal(d.reason, 'UNKNOWN');
  assert.equal(d.variant, 'false');
});

test('missing flag: code default with FLAG_NOT_FOUND', async () => {
  const d = await client.getBooleanDetails('does-not-exist', true, { targetingKey: 'u1' });
  assert.equal(d.value, true);
  assert.equal(d.errorCode, ErrorCode.FLAG_NOT_FOUND);
  assert.equal(d.reason, 'ERROR');
});

test('type mismatch is detected client-side', async () => {
  // banner-text is a string flag; asking for a boolean must not coerce.
  const d = await client.getBooleanDetails('banner-text', true, { targetingKey: 'u1' });
  assert.equal(d.value, true);
  assert.equal(d.errorCode, ErrorCode.TYPE_MISMATCH);
  assert.equal(d.reason, 'ERROR');
});
