// The official `openai` npm SDK pointed at terse's base URL, terse forwarding to a fake upstream.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startFakeUpstream, startTerse } from './harness.mjs';

const config = `
providers:
  - name: fake
    kind: openai_compatible
    base_url: \${UPSTREAM}
    retry: { max_attempts: 1 }
routes:
  - name: renamed
    model: small
    provider: fake
    upstream_model: fake-small-2024
  - name: gpt
    model: "gpt-*"
    provider: fake
  - name: fail
    model: "fail-*"
    provider: fake
`;

let upstream;
let terse;
let client;

before(async () => {
  upstream = await startFakeUpstream((req, body) => {
    if (body?.model === 'fail-401') {
      return { status: 401, json: { error: { message: 'Incorrect API key provided', type: 'invalid_request_error', code: 'invalid_api_key' } } };
    }
    if (body?.model === 'fail-500') return { status: 500, json: { error: { message: 'boom', type: 'server_error' } } };
    if (body?.model === 'fail-400') {
      return { status: 400, json: { error: { message: 'bad temperature', type: 'invalid_request_error', param: 'temperature', code: null } } };
    }
    return null;
  });
  terse = await startTerse(config, { upstreamPort: upstream.port });
  client = new OpenAI({ baseURL: terse.baseURL, apiKey: 'sk-test-not-a-real-key', maxRetries: 0, timeout: 20_000 });
});

after(async () => {
  const code = await terse?.stop();
  await upstream?.close();
  assert.equal(code, 0, 'terse exits cleanly on SIGTERM');
});

test('chat completion, non-streaming', async () => {
  const r = await client.chat.completions.create({
    model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello there' }],
  });
  assert.equal(r.choices[0].message.content, 'echo: hello there');
  assert.equal(r.usage.total_tokens, 10);
});

test('chat completion, streaming, with and without usage', async () => {
  for (const includeUsage of [false, true]) {
    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'one two three four' }],
      ...(includeUsage ? { stream_options: { include_usage: true } } : {}),
    });
    let text = '';
    let usage = null;
    let chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      text += chunk.choices[0]?.delta?.content ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    assert.equal(text, 'echo: one two three four');
    assert.ok(chunks >= 5, `several chunks, got ${chunks}`);
    if (includeUsage) assert.ok(usage && usage.total_tokens > 0, 'usage chunk when asked');
    else assert.equal(usage, null, 'no usage chunk when not asked');
  }
  // terse always asks the upstream for usage, to book it.
  const last = upstream.received.at(-1);
  assert.equal(last.body.stream_options?.include_usage, true);
});

test('tools and unknown fields reach the upstream unchanged and in order', async () => {
  const tools = [{ type: 'function', function: { name: 'get_weather', description: 'Weather for a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } }];
  await client.chat.completions.create({
    model: 'gpt-4o', messages: [{ role: 'user', content: 'weather in Paris?' }],
    tools, tool_choice: 'auto', response_format: { type: 'text' }, seed: 7,
    some_future_field: { nested: [1, 2, 3] },
  });
  const got = upstream.received.at(-1);
  assert.deepEqual(got.body.tools, tools);
  assert.equal(got.body.tool_choice, 'auto');
  assert.deepEqual(got.body.response_format, { type: 'text' });
  assert.equal(got.body.seed, 7);
  assert.deepEqual(got.body.some_future_field, { nested: [1, 2, 3] });
  const keys = Object.keys(got.body);
  assert.ok(keys.indexOf('tools') < keys.indexOf('tool_choice') && keys.indexOf('seed') < keys.indexOf('some_future_field'),
            `order kept: ${keys}`);
});

test('a route renames the model for the upstream', async () => {
  await client.chat.completions.create({ model: 'small', messages: [{ role: 'user', content: 'hi' }] });
  assert.equal(upstream.received.at(-1).body.model, 'fake-small-2024');
});

test('models list and embeddings', async () => {
  const models = await client.models.list();
  const ids = models.data.map((m) => m.id);
  assert.ok(ids.includes('small'), `models: ${ids}`);
  const e = await client.embeddings.create({ model: 'gpt-embed', input: 'hello', encoding_format: 'float' });
  assert.deepEqual(e.data[0].embedding, [0.1, 0.2]);
});

test('errors map to the SDK error classes', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }),
    (e) => e instanceof OpenAI.NotFoundError && e.status === 404 && e.code === 'model_not_found');
  await assert.rejects(
    client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'wizard', content: 'x' }] }),
    (e) => e instanceof OpenAI.BadRequestError && e.status === 400 && e.type === 'invalid_request_error');
  await assert.rejects(
    client.chat.completions.create({ model: 'fail-401', messages: [{ role: 'user', content: 'x' }] }),
    (e) => e instanceof OpenAI.AuthenticationError && e.status === 401);
  await assert.rejects(
    client.chat.completions.create({ model: 'fail-400', messages: [{ role: 'user', content: 'x' }] }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'temperature');
  await assert.rejects(
    client.chat.completions.create({ model: 'fail-500', messages: [{ role: 'user', content: 'x' }] }),
    (e) => e instanceof OpenAI.APIError && e.status === 502 && e.type === 'upstream_error');
  // Still serving after every bad input.
  const r = await client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'still here' }] });
  assert.equal(r.choices[0].message.content, 'echo: still here');
  assert.ok(terse.alive());
});

test('x-request-id is echoed or made up', async () => {
  const { response } = await client.chat.completions
    .create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'id?' }] }, { headers: { 'x-request-id': 'req-e2e-1' } })
    .withResponse();
  assert.equal(response.headers.get('x-request-id'), 'req-e2e-1');
  const raw = await fetch(`${terse.baseURL}/models`);
  assert.ok(raw.headers.get('x-request-id'));
});

test('malformed and oversized bodies get OpenAI-shaped errors', async () => {
  const bad = await fetch(`${terse.baseURL}/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model": "gpt-4o", "messages": [',
  });
  assert.equal(bad.status, 400);
  assert.equal((await bad.json()).error.type, 'invalid_request_error');
  const big = await fetch(`${terse.baseURL}/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x'.repeat(9 * 1024 * 1024) }] }),
  }).catch((e) => e);
  if (!(big instanceof Error)) assert.equal(big.status, 413);
  assert.ok(terse.alive());
});

