// Tenancy through the official `openai` npm SDK: its errors for a missing key, a spent budget and
// a rate limit, whether it retries them, and the cost headers of an admitted answer.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import OpenAI from 'openai';
import { startFakeUpstream, startTerse, terseBin } from './harness.mjs';

// A new key as `terse keygen --env` prints it.
function newKey() {
  const out = spawnSync(terseBin, ['keygen', '--env'], { encoding: 'utf8' });
  assert.equal(out.status, 0, out.stderr);
  const value = (name) => out.stdout.match(new RegExp(`${name}='([^']*)'`))[1];
  return { text: value('TERSE_KEY'), id: value('TERSE_KEY_ID'), hash: value('TERSE_KEY_HASH') };
}

const rich = newKey();
const poor = newKey();
const slow = newKey();
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'terse-e2e-tenancy-'));
const config = `
providers:
  - { name: fake, kind: openai_compatible, base_url: \${UPSTREAM}, retry: { max_attempts: 1 } }
routes:
  - { name: gpt, model: "gpt-*", provider: fake }
tenancy:
  data_dir: ${dataDir}
  prices:
    openai_compatible/*: { litellm_provider: openai_compatible, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002 }
  tenants:
    - id: rich
      budgets: [{ period: month, usd: 100 }]
      keys: [{ id: ${rich.id}, hash: "${rich.hash}" }]
    - id: poor
      budgets: [{ period: total, usd: 0.000001 }]
      keys: [{ id: ${poor.id}, hash: "${poor.hash}" }]
    - id: slow
      limits: { requests_per_minute: 1 }
      keys: [{ id: ${slow.id}, hash: "${slow.hash}" }]
`;

let upstream;
let terse;
before(async () => {
  upstream = await startFakeUpstream();
  terse = await startTerse(config, { upstreamPort: upstream.port });
});
after(async () => {
  await terse?.stop();
  await upstream?.close();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

// A client that counts the HTTP requests it makes (retries included).
function client(apiKey, options = {}) {
  const counter = { requests: 0 };
  const openai = new OpenAI({
    baseURL: terse.baseURL, apiKey, ...options,
    fetch: (url, init) => { counter.requests += 1; return fetch(url, init); },
  });
  return { openai, counter };
}

// An error's response header (a Headers object in SDK v5, a plain object before).
const header = (e, name) => (typeof e.headers?.get === 'function' ? e.headers.get(name) : e.headers?.[name]) ?? null;

const ask = { model: 'gpt-4o-mini', max_tokens: 16, messages: [{ role: 'user', content: 'hello' }] };

test('a wrong key is an AuthenticationError, not retried', async () => {
  const { openai, counter } = client('sk-terse-not-a-key');
  await assert.rejects(openai.chat.completions.create(ask), (e) => {
    assert.ok(e instanceof OpenAI.AuthenticationError, e.constructor.name);
    assert.equal(e.status, 401);
    assert.equal(e.code, 'invalid_api_key');
    return true;
  });
  assert.equal(counter.requests, 1);
});

test('an admitted answer carries its cost and the budget left', async () => {
  const { openai } = client(rich.text);
  const { data, response } = await openai.chat.completions.create(ask).withResponse();
  assert.equal(data.choices[0].message.content, 'echo: hello');
  // The fake upstream's usage: 7 prompt and 3 completion tokens.
  assert.equal(response.headers.get('x-terse-cost-usd'), '0.000013');
  assert.equal(response.headers.get('x-terse-budget-remaining-usd'), '99.999987');
  assert.ok(!upstream.received.at(-1).headers.authorization?.includes(rich.text));
});

test('a spent budget is a RateLimitError with insufficient_quota, never retried', async () => {
  const { openai, counter } = client(poor.text);
  await assert.rejects(openai.chat.completions.create(ask), (e) => {
    assert.ok(e instanceof OpenAI.RateLimitError, e.constructor.name);
    assert.equal(e.status, 429);
    assert.equal(e.code, 'insufficient_quota');
    assert.equal(header(e, 'x-should-retry'), 'false');
    return true;
  });
  assert.equal(counter.requests, 1);
});

test('a rate limit is a RateLimitError that says how long to wait', async () => {
  const { openai } = client(slow.text, { maxRetries: 0 });
  await openai.chat.completions.create(ask);
  await assert.rejects(openai.chat.completions.create(ask), (e) => {
    assert.ok(e instanceof OpenAI.RateLimitError, e.constructor.name);
    assert.equal(e.code, 'rate_limit_exceeded');
    assert.ok(Number(header(e, 'retry-after-ms')) > 50_000);
    assert.equal(header(e, 'x-should-retry'), null);
    return true;
  });
});
