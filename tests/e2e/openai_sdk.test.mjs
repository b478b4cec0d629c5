// The official `openai` npm SDK pointed at terse's base URL, terse forwarding to a fake upstream.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import OpenAI, { AzureOpenAI } from 'openai';
import { chatChunks, startFakeUpstream, startTerse, waitUntil } from './harness.mjs';

const config = `
providers:
  - name: fake
    kind: openai_compatible
    base_url: \${UPSTREAM}
    retry: { max_attempts: 1 }
  - name: slow
    kind: openai_compatible
    base_url: \${UPSTREAM}
    retry: { max_attempts: 1 }
    timeouts: { first_byte_ms: 300 }
routes:
  - name: renamed
    model: small
    provider: fake
    upstream_model: fake-small-2024
  - name: org
    model: "org-*"
    provider: fake
    pass_organization: true
  - name: stall
    model: "stall-*"
    provider: slow
  - name: gpt
    model: "gpt-*"
    provider: fake
  - name: fail
    model: "fail-*"
    provider: fake
limits: { max_body_bytes: 1048576 }
`;

// Streamed tool calls as OpenAI sends them: the call's id and name first, then the arguments in
// fragments, a second call, and the finish.
function toolCallChunks(model) {
  const base = { id: 'chatcmpl-tools', object: 'chat.completion.chunk', created: 1700000000, model };
  const delta = (d, finish = null) => ({ ...base, choices: [{ index: 0, delta: d, logprobs: null, finish_reason: finish }] });
  return [
    delta({ role: 'assistant', content: null, tool_calls: [{ index: 0, id: 'call_a1', type: 'function', function: { name: 'get_weather', arguments: '' } }] }),
    delta({ tool_calls: [{ index: 0, function: { arguments: '{"ci' } }] }),
    delta({ tool_calls: [{ index: 0, function: { arguments: 'ty": "Pa' } }] }),
    delta({ tool_calls: [{ index: 0, function: { arguments: 'ris"}' } }] }),
    delta({ tool_calls: [{ index: 1, id: 'call_b2', type: 'function', function: { name: 'get_time', arguments: '{}' } }] }),
    delta({}, 'tool_calls'),
  ];
}

function legacyChunks(model, words) {
  const base = { id: 'cmpl-fake', object: 'text_completion', created: 1700000000, model };
  return [...words.map((w) => ({ ...base, choices: [{ index: 0, text: w, logprobs: null, finish_reason: null }] })),
          { ...base, choices: [{ index: 0, text: '', logprobs: null, finish_reason: 'stop' }] }];
}

// What the fake upstream does for the models of the tests below (null: the harness's default).
function behaviour(req, body) {
  const model = body?.model;
  if (model === 'fail-401') {
    return { status: 401, json: { error: { message: 'Incorrect API key provided', type: 'invalid_request_error', code: 'invalid_api_key' } } };
  }
  if (model === 'fail-500') return { status: 500, json: { error: { message: 'boom', type: 'server_error' } } };
  if (model === 'fail-400') {
    return { status: 400, json: { error: { message: 'bad temperature', type: 'invalid_request_error', param: 'temperature', code: null } } };
  }
  if (model?.startsWith('stall-')) return { stall: true };
  if (model === 'gpt-reset-mid') {
    // The pauses let terse read the first chunks: a reset discards data not yet read.
    return { sse: chatChunks(model, ['one ', 'two ', 'three ', 'four'], false), resetAfter: 3, delayMs: 50 };
  }
  if (model === 'gpt-held') {
    // Two words, then nothing until the client (terse) leaves.
    return { sse: chatChunks(model, ['first ', 'second ', 'never'], false), stallAfter: 3 };
  }
  if (model === 'gpt-tools-stream') return { sse: toolCallChunks(model) };
  if (model === 'gpt-3.5-turbo-instruct' && body?.stream) {
    return { sse: legacyChunks(model, ['Once ', 'upon ', 'a time']) };
  }
  return null;
}

// Prometheus text -> Map of `name{labels}` -> value.
function parseMetrics(text) {
  const values = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    values.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return values;
}

async function metrics() {
  const r = await fetch(`${terse.baseURL.replace(/\/v1$/, '')}/metrics`);
  assert.equal(r.status, 200);
  return parseMetrics(await r.text());
}

// Consumes a stream; resolves with the text and how the loop ended (`error` when it threw).
async function drain(stream, onChunk = () => {}) {
  let text = '';
  try {
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? chunk.choices[0]?.text ?? '';
      onChunk(chunk);
    }
    return { text, error: null };
  } catch (error) {
    return { text, error };
  }
}

function timeout(ms, what) {
  let timer;
  const promise = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took more than ${ms} ms`)), ms);
  });
  promise.clear = () => clearTimeout(timer);
  return promise;
}

async function bounded(promise, ms, what) {
  const t = timeout(ms, what);
  try {
    return await Promise.race([promise, t]);
  } finally {
    t.clear();
  }
}

let upstream;
let terse;
let client;

before(async () => {
  upstream = await startFakeUpstream(behaviour);
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


test('an upstream reset mid-stream is an error inside the for-await loop, never a clean end', async () => {
  const stream = await client.chat.completions.create({
    model: 'gpt-reset-mid', stream: true, messages: [{ role: 'user', content: 'count' }],
  });
  const { text, error } = await bounded(drain(stream), 15_000, 'the cut stream');
  assert.equal(text, 'one two ', 'the chunks before the reset arrive');
  assert.ok(error instanceof OpenAI.APIError, `an APIError, got ${error}`);
  assert.match(error.message, /upstream/i);
  const r = await client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'after reset' }] });
  assert.equal(r.choices[0].message.content, 'echo: after reset');
});

test('aborting a stream closes the upstream connection; terse keeps serving', async () => {
  const ac = new AbortController();
  const stream = await client.chat.completions.create(
    { model: 'gpt-held', stream: true, messages: [{ role: 'user', content: 'abort me 7f3a' }] },
    { signal: ac.signal });
  const entry = upstream.received.find((e) => e.body?.messages?.[0]?.content === 'abort me 7f3a');
  assert.ok(entry, 'the upstream got the request');
  let seen = 0;
  const { text, error } = await bounded(drain(stream, () => { if (++seen === 2) ac.abort(); }), 15_000,
                                        'the aborted stream');
  assert.ok(text.startsWith('first '), text);  // a chunk already read may still be yielded
  // This SDK ends the loop quietly on abort (others throw APIUserAbortError).
  assert.ok(error === null || error instanceof OpenAI.APIUserAbortError, `an abort, got ${error}`);
  await waitUntil(() => entry.clientClosed, 5_000, 'terse to close the upstream connection');
  const r = await client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'after abort' }] });
  assert.equal(r.choices[0].message.content, 'echo: after abort');
});

test('a stalled upstream is a 504 upstream_error, streamed or not', async () => {
  for (const stream of [false, true]) {
    await assert.rejects(
      client.chat.completions.create({ model: 'stall-model', stream, messages: [{ role: 'user', content: 'x' }] }),
      (e) => e instanceof OpenAI.APIError && e.status === 504 && e.type === 'upstream_error');
  }
});

test('an oversized body is a 413 through the SDK', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x'.repeat(1_200_000) }] }),
    (e) => e instanceof OpenAI.APIError && e.status === 413 && e.type === 'invalid_request_error');
  assert.ok(terse.alive());
});

test('legacy completions, plain and streamed', async () => {
  const r = await client.completions.create({ model: 'gpt-3.5-turbo-instruct', prompt: 'Say ok', max_tokens: 5 });
  assert.equal(r.choices[0].text, 'ok');
  assert.equal(upstream.received.at(-1).url, '/v1/completions');
  assert.equal(upstream.received.at(-1).body.prompt, 'Say ok');
  const stream = await client.completions.create({ model: 'gpt-3.5-turbo-instruct', prompt: 'Tell', stream: true });
  const { text, error } = await bounded(drain(stream), 15_000, 'the completions stream');
  assert.equal(error, null);
  assert.equal(text, 'Once upon a time');
});

test('embeddings as floats, as base64, and decoded by the SDK by default', async () => {
  const floats = await client.embeddings.create({ model: 'gpt-embed', input: 'hello', encoding_format: 'float' });
  assert.deepEqual(floats.data[0].embedding, [0.1, 0.2]);
  assert.equal(upstream.received.at(-1).body.encoding_format, 'float');
  const b64 = await client.embeddings.create({ model: 'gpt-embed', input: ['a', 'b'], encoding_format: 'base64' });
  const expected = Buffer.from(new Float32Array([0.1, 0.2]).buffer).toString('base64');
  assert.equal(b64.data[0].embedding, expected);
  assert.deepEqual(upstream.received.at(-1).body.input, ['a', 'b']);
  const decoded = await client.embeddings.create({ model: 'gpt-embed', input: 'hello' });
  assert.equal(upstream.received.at(-1).body.encoding_format, 'base64');
  assert.deepEqual(Array.from(decoded.data[0].embedding), Array.from(new Float32Array([0.1, 0.2])));
});

test('OpenAI-Organization and OpenAI-Project reach the upstream only on a pass_organization route', async () => {
  const orgClient = new OpenAI({ baseURL: terse.baseURL, apiKey: 'sk-test', organization: 'org-e2e', project: 'proj-e2e', maxRetries: 0 });
  await orgClient.chat.completions.create({ model: 'org-model', messages: [{ role: 'user', content: 'org' }] });
  let got = upstream.received.at(-1);
  assert.equal(got.headers['openai-organization'], 'org-e2e');
  assert.equal(got.headers['openai-project'], 'proj-e2e');
  await orgClient.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'no org' }] });
  got = upstream.received.at(-1);
  assert.equal(got.body.messages[0].content, 'no org');
  assert.equal(got.headers['openai-organization'], undefined);
  assert.equal(got.headers['openai-project'], undefined);
});

test('streamed delta.tool_calls fragments are relayed unchanged', async () => {
  const stream = await client.chat.completions.create({
    model: 'gpt-tools-stream', stream: true, messages: [{ role: 'user', content: 'weather and time?' }],
    tools: [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object' } } }],
  });
  const chunks = [];
  const { error } = await bounded(drain(stream, (c) => chunks.push(c)), 15_000, 'the tools stream');
  assert.equal(error, null);
  assert.deepEqual(chunks, toolCallChunks('gpt-tools-stream'));
  const args = chunks.flatMap((c) => c.choices[0].delta.tool_calls ?? [])
    .filter((t) => t.index === 0).map((t) => t.function.arguments).join('');
  assert.deepEqual(JSON.parse(args), { city: 'Paris' });
});

test('50 parallel streams all complete with their own text', async () => {
  const runs = Array.from({ length: 50 }, async (_, i) => {
    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: `stream ${i} alpha beta` }],
    });
    return drain(stream);
  });
  const results = await bounded(Promise.all(runs), 30_000, '50 parallel streams');
  results.forEach(({ text, error }, i) => {
    assert.equal(error, null, `stream ${i}`);
    assert.equal(text, `echo: stream ${i} alpha beta`);
  });
});

test('many sequential requests share one keep-alive connection', async () => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  let sockets = 0;
  const create = agent.createConnection.bind(agent);
  agent.createConnection = (...args) => { sockets++; return create(...args); };
  const kept = new OpenAI({ baseURL: terse.baseURL, apiKey: 'sk-test', httpAgent: agent, maxRetries: 0 });
  for (let i = 0; i < 60; i++) {
    if (i % 3 === 2) {
      const { text, error } = await drain(await kept.chat.completions.create({
        model: 'gpt-4o', stream: true, messages: [{ role: 'user', content: `seq ${i}` }] }));
      assert.equal(error, null);
      assert.equal(text, `echo: seq ${i}`);
    } else {
      const r = await kept.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: `seq ${i}` }] });
      assert.equal(r.choices[0].message.content, `echo: seq ${i}`);
    }
  }
  agent.destroy();
  assert.equal(sockets, 1, 'one connection for all 60 requests');
});

test('/metrics counts SDK calls: requests, errors by type, latency histogram', async () => {
  const before = await metrics();
  for (let i = 0; i < 3; i++) {
    await client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: `m${i}` }] });
  }
  await assert.rejects(client.chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'x' }] }));
  await assert.rejects(client.chat.completions.create({ model: 'fail-500', messages: [{ role: 'user', content: 'x' }] }));
  const after = await metrics();
  const delta = (key) => (after.get(key) ?? 0) - (before.get(key) ?? 0);
  assert.ok(delta('terse_requests_total{route="gpt",operation="chat_completions",status="200"}') >= 3);
  assert.ok(delta('terse_requests_total{route="",operation="chat_completions",status="404"}') >= 1);
  assert.ok(delta('terse_requests_total{route="fail",operation="chat_completions",status="502"}') >= 1);
  assert.ok(delta('terse_errors_total{route="",operation="chat_completions",type="invalid_request_error"}') >= 1);
  assert.ok(delta('terse_errors_total{route="fail",operation="chat_completions",type="upstream_error"}') >= 1);
  assert.ok(delta('terse_request_duration_seconds_count{operation="chat_completions"}') >= 5);
  assert.ok(delta('terse_upstream_first_byte_seconds_count{route="gpt"}') >= 3);
});

test('the AzureOpenAI client (api-key header, deployment paths) works against terse', async () => {
  const azure = new AzureOpenAI({
    endpoint: terse.baseURL.replace(/\/v1$/, ''), apiKey: 'azure-e2e-key', apiVersion: '2024-10-21',
    deployment: 'gpt-4o-deploy', maxRetries: 0,
  });
  const r = await azure.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi azure' }] });
  assert.equal(r.choices[0].message.content, 'echo: hi azure');
  assert.equal(upstream.received.at(-1).body.model, 'gpt-4o-deploy', 'the deployment names the model');
  const { text, error } = await drain(await azure.chat.completions.create({
    model: 'gpt-4o', stream: true, messages: [{ role: 'user', content: 'stream azure' }] }));
  assert.equal(error, null);
  assert.equal(text, 'echo: stream azure');
  const keyless = new AzureOpenAI({ endpoint: terse.baseURL.replace(/\/v1$/, ''), apiKey: 'k', apiVersion: '2024-10-21', maxRetries: 0 });
  const e = await keyless.embeddings.create({ model: 'gpt-embed-small', input: 'x', encoding_format: 'float' });
  assert.deepEqual(e.data[0].embedding, [0.1, 0.2]);
  assert.equal(upstream.received.at(-1).url, '/v1/embeddings');
});

test('the process and its threads are named terse (ps, top -H, profilers)', { skip: !fs.existsSync('/proc/self/comm') }, () => {
  assert.equal(fs.readFileSync(`/proc/${terse.pid}/comm`, 'utf8').trim(), 'terse');
  const threads = fs.readdirSync(`/proc/${terse.pid}/task`)
    .map((t) => fs.readFileSync(`/proc/${terse.pid}/task/${t}/comm`, 'utf8').trim());
  assert.ok(threads.includes('terse-io'), `threads: ${threads}`);
  // The upstream engine's lanes run on the I/O threads: no thread of their own while serving.
  assert.ok(!threads.includes('terse-http'), `threads: ${threads}`);
});

test('SIGTERM during a stream: the client sees an end or an error, terse exits 0 within 10 s', async () => {
  const own = await startTerse(config, { upstreamPort: upstream.port });
  try {
    const c = new OpenAI({ baseURL: own.baseURL, apiKey: 'sk-test', maxRetries: 0 });
    const stream = await c.chat.completions.create({
      model: 'gpt-held', stream: true, messages: [{ role: 'user', content: 'held for shutdown' }] });
    let seen = 0;
    let signalled;
    const ended = drain(stream, () => {
      if (++seen === 2) {
        signalled = Date.now();
        own.signal('SIGTERM');
      }
    });
    const { text } = await bounded(ended, 15_000, 'the stream to end after SIGTERM');
    assert.equal(text, 'first second ');  // all that was sent; then the cut, as an end or error
    const code = await bounded(own.exited, 10_000, 'terse to exit after SIGTERM');
    assert.equal(code, 0);
    assert.ok(Date.now() - signalled < 10_000);
  } finally {
    await own.stop();
  }
});
