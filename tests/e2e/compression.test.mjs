// Compression on the request path, end to end: the official `openai` SDK (and a gRPC client) ->
// a real `terse serve` with the tiny test model -> the fake upstream, which records what arrived.
// Token counts are npm tiktoken's, over all message text, as the route's budget is stated.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import OpenAI from 'openai';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { startFakeUpstream, startTerse } from './harness.mjs';
import { prose, tokens } from './prompts.mjs';

const require = createRequire(import.meta.url);
const { get_encoding } = require('tiktoken');
const cl100k = get_encoding('cl100k_base');  // gpt-4, gpt-3.5

const pairsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'terse-pairs-'));
const pairsPath = path.join(pairsDir, 'pairs.jsonl');

// `half` and `strict` differ only in allow_overrides; `hasty` cannot finish in its timeout, so its
// requests exercise the fallback to the uncompressed prompt.
const config = `
compressor: { model_dir: tests/fixtures/tiny-lm, threads: 1, workers: 2 }
providers:
  - { name: fake, kind: openai_compatible, base_url: \${UPSTREAM}, retry: { max_attempts: 1 } }
routes:
  - name: half
    model: gpt-4o-mini
    provider: fake
    allow_overrides: true
    compression:
      enabled: true
      rate: 0.5
      min_prompt_tokens: 200
      timeout_ms: 120000
      record_alignment_pairs: ${pairsPath}
  - name: strict
    model: gpt-4o-strict
    provider: fake
    compression: { enabled: true, rate: 0.5, min_prompt_tokens: 200, timeout_ms: 120000 }
  - name: hasty
    model: gpt-4o-hasty
    provider: fake
    compression: { enabled: true, rate: 0.5, timeout_ms: 1 }
  - name: legacy
    model: gpt-3.5-turbo-instruct
    provider: fake
    compression: { enabled: true, rate: 0.4, timeout_ms: 120000 }
`;

// ---- Text: seeded prose (prompts.mjs), so every run sends the same prompts.

function textOf(content) {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content.filter((p) => p.type === 'text').map((p) => p.text).join('');
}

// A conversation with every kind of message the compressor must respect: a system prompt with a
// keep span, a named user turn with an image, an assistant tool call and its tool result, an
// assistant answer, and a last user message of a text part, an image, and documents + question.
const kKeep = 'Policy 7-B: refunds above 250 euros need two signatures.';
const kDocKeep = 'Ledger entry 4411 shows 18 sacks of salt.';
const kImage = { type: 'image_url', image_url: { url: 'https://example.com/harbor.png', detail: 'low' } };

function conversation(question, seed = 1) {
  return [
    { role: 'system', content: `${prose(120, seed)} <terse:keep>${kKeep}</terse:keep> ${prose(60, seed + 1)}` },
    { role: 'user', name: 'alice', content: [{ type: 'text', text: prose(110, seed + 2) }, kImage] },
    { role: 'assistant', content: null, tool_calls: [{ id: 'call_7', type: 'function', function: { name: 'ledger', arguments: '{"town":"Harwick"}' } }] },
    { role: 'tool', tool_call_id: 'call_7', content: '{"town": "Harwick", "entries": 31, "currency": "silver"}' },
    { role: 'assistant', content: prose(90, seed + 3) },
    {
      role: 'user',
      content: [
        { type: 'text', text: prose(80, seed + 4) },
        kImage,
        { type: 'text', text: `${prose(120, seed + 5)}\n\n${prose(70, seed + 6)} <terse:keep>${kDocKeep}</terse:keep> ${prose(40, seed + 7)}\n\n${question}` },
      ],
    },
  ];
}

const kQuestion = 'How many sacks of salt does ledger entry 4411 show, and who must sign refunds?';

// The structure every compressed request must keep: roles, order, count, names, tool ids and
// calls, non-text parts; only text shortened, keep spans verbatim, no terse tag left.
function assertSameShape(sent, got) {
  assert.equal(got.length, sent.length, 'message count');
  for (let i = 0; i < sent.length; i++) {
    const s = sent[i];
    const g = got[i];
    assert.equal(g.role, s.role, `messages[${i}].role`);
    assert.deepEqual(Object.keys(g), Object.keys(s), `messages[${i}] fields`);
    for (const field of ['name', 'tool_call_id', 'tool_calls']) {
      assert.deepEqual(g[field], s[field], `messages[${i}].${field}`);
    }
    if (Array.isArray(s.content)) {
      assert.equal(g.content.length, s.content.length, `messages[${i}] part count`);
      s.content.forEach((part, p) => {
        assert.equal(g.content[p].type, part.type, `messages[${i}].content[${p}].type`);
        if (part.type !== 'text') assert.deepEqual(g.content[p], part, `messages[${i}].content[${p}]`);
      });
    } else {
      assert.equal(typeof g.content, typeof s.content, `messages[${i}].content type`);
    }
    assert.ok(!JSON.stringify(g.content ?? '').includes('<terse'), `messages[${i}] has no terse tag`);
  }
}

function assertRate(originalTokens, gotTokens, rate) {
  const target = rate * originalTokens;
  assert.ok(Math.abs(gotTokens - target) <= 0.05 * target,
            `${gotTokens} tokens forwarded; target ${target.toFixed(1)} (${rate} x ${originalTokens}) +-5%`);
}

function lastText(messages) { return textOf(messages.at(-1).content); }

// What the fake upstream answers: "echo: " and the last user message's text parts joined by spaces.
function echoOf(messages) {
  const c = messages.at(-1).content;
  return `echo: ${typeof c === 'string' ? c : c.filter((p) => p.type === 'text').map((p) => p.text).join(' ')}`;
}

// ---- Processes.

let upstream;
let terse;
let client;

before(async () => {
  upstream = await startFakeUpstream();
  terse = await startTerse(config, { upstreamPort: upstream.port });
  client = new OpenAI({ baseURL: terse.baseURL, apiKey: 'sk-test-not-a-real-key', maxRetries: 0, timeout: 120_000 });
});

after(async () => {
  const code = await terse?.stop();
  await upstream?.close();
  fs.rmSync(pairsDir, { recursive: true, force: true });
  assert.equal(code, 0, 'terse exits cleanly on SIGTERM');
});

// Sends one chat through the SDK and returns what the upstream received and the response headers.
async function chat(body, options = {}) {
  const before = upstream.received.length;
  const { data, response } = await client.chat.completions.create(body, options).withResponse();
  const arrived = upstream.received.slice(before).filter((r) => r.url.endsWith('/chat/completions'));
  assert.equal(arrived.length, 1, 'one upstream call');
  return { data, headers: response.headers, forwarded: arrived[0].body };
}

async function metric(name, route) {
  const text = await (await fetch(`http://127.0.0.1:${terse.httpPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{route="${route}"}`));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

// ---- Tests.

test('the forwarded chat is shorter by the route rate, same messages, keep spans and question intact', async () => {
  const messages = conversation(kQuestion);
  const { data, headers, forwarded } = await chat({ model: 'gpt-4o-mini', messages, max_tokens: 50 });
  const got = forwarded.messages;
  assertSameShape(messages, got);

  const original = tokens(messages);
  const compressed = tokens(got);
  assertRate(original, compressed, 0.5);

  // The keep spans arrive verbatim, without their tags.
  assert.ok(textOf(got[0].content).includes(kKeep), 'system keep span');
  assert.ok(lastText(got).includes(kDocKeep), 'document keep span');
  // The question (the last block of the last user message) is intact.
  assert.ok(lastText(got).endsWith(`\n\n${kQuestion}`), `question intact: ...${lastText(got).slice(-120)}`);
  // The tool result is kept as it was (the route keeps tool messages).
  assert.equal(got[3].content, messages[3].content);

  // The headers tell the same story as what arrived.
  assert.equal(Number(headers.get('x-terse-original-tokens')), original);
  assert.equal(Number(headers.get('x-terse-compressed-tokens')), compressed);
  assert.ok(Math.abs(Number(headers.get('x-terse-rate')) - compressed / original) < 1e-3,
            `x-terse-rate ${headers.get('x-terse-rate')} vs ${compressed / original}`);
  assert.ok(Number(headers.get('x-terse-compress-ms')) > 0);
  assert.match(headers.get('x-terse-cache'), /^(hit|miss)$/);
  assert.equal(data.choices[0].message.content, echoOf(got));
});

test('streaming works on a compressed request', async () => {
  const messages = conversation('Which roads did the storms close?', 2);
  const before = upstream.received.length;
  const { data: stream, response } = await client.chat.completions
    .create({ model: 'gpt-4o-mini', messages, stream: true }).withResponse();
  let text = '';
  let chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    text += chunk.choices[0]?.delta?.content ?? '';
  }
  const forwarded = upstream.received[before].body;
  assert.equal(forwarded.stream, true);
  assertSameShape(messages, forwarded.messages);
  assertRate(tokens(messages), tokens(forwarded.messages), 0.5);
  assert.ok(chunks > 3, `several chunks, got ${chunks}`);
  assert.equal(text, echoOf(forwarded.messages));
  assert.equal(Number(response.headers.get('x-terse-compressed-tokens')), tokens(forwarded.messages));
});

test('a prompt under min_prompt_tokens is forwarded byte-identical', async () => {
  const messages = [
    { role: 'system', content: 'You are a careful clerk of the river towns. Answer in one line.' },
    { role: 'user', content: `${prose(60, 40)}\n\nWhat was traded? Ünïcode “quotes” stay.` },
  ];
  assert.ok(tokens(messages) < 200);
  const body = { model: 'gpt-4o-mini', messages };
  const { headers, forwarded } = await chat(body);
  assert.deepEqual(forwarded.messages, messages);
  // The SDK writes its body as JSON.stringify(body, null, 2); terse relays it as written.
  assert.equal(upstream.received.at(-1).raw, JSON.stringify(body, null, 2), 'the bytes the client sent');
  assert.equal(headers.get('x-terse-original-tokens'), null, 'no x-terse-* headers when not applied');
});

test('overrides are honoured where the route allows them', async () => {
  const messages = conversation('Who kept notes on the tides?', 3);
  const original = tokens(messages);

  const rated = await chat({ model: 'gpt-4o-mini', messages }, { headers: { 'x-terse-rate': '0.3' } });
  assertRate(original, tokens(rated.forwarded.messages), 0.3);

  const off = await chat({ model: 'gpt-4o-mini', messages }, { headers: { 'x-terse-compress': 'off' } });
  assert.deepEqual(off.forwarded.messages, messages);
  assert.equal(off.headers.get('x-terse-original-tokens'), null);

  const body = await chat({ model: 'gpt-4o-mini', messages, terse: { rate: 0.3 } });
  assert.equal(body.forwarded.terse, undefined, 'the terse object is stripped');
  assertRate(original, tokens(body.forwarded.messages), 0.3);
  assert.deepEqual(body.forwarded.messages, rated.forwarded.messages, 'deterministic');

  const bodyOff = await chat({ model: 'gpt-4o-mini', messages, terse: { compress: false } });
  assert.equal(bodyOff.forwarded.terse, undefined);
  assert.deepEqual(bodyOff.forwarded.messages, messages);
});

test('overrides are ignored where the route does not allow them', async () => {
  const messages = conversation('Who kept notes on the tides?', 3);
  const original = tokens(messages);

  const rated = await chat({ model: 'gpt-4o-strict', messages }, { headers: { 'x-terse-rate': '0.3' } });
  assertRate(original, tokens(rated.forwarded.messages), 0.5);

  const off = await chat({ model: 'gpt-4o-strict', messages }, { headers: { 'x-terse-compress': 'off' } });
  assertRate(original, tokens(off.forwarded.messages), 0.5);

  const body = await chat({ model: 'gpt-4o-strict', messages, terse: { compress: false, rate: 0.3 } });
  assert.equal(body.forwarded.terse, undefined, 'the terse object is stripped even here');
  assertRate(original, tokens(body.forwarded.messages), 0.5);
  assert.equal(Number(body.headers.get('x-terse-compressed-tokens')), tokens(body.forwarded.messages));
});

test('50 concurrent requests are all compressed correctly', async () => {
  const before = upstream.received.length;
  const questions = Array.from({ length: 50 }, (_, i) => `Question ${i}: what did caravan ${i} carry?`);
  const results = await Promise.all(questions.map(async (q, i) => {
    const messages = conversation(q, 100 + i);
    const { data, response } = await client.chat.completions
      .create({ model: 'gpt-4o-mini', messages }).withResponse();
    return { i, q, messages, data, headers: response.headers };
  }));
  const arrived = upstream.received.slice(before);
  assert.equal(arrived.length, 50);
  for (const { i, q, messages, data, headers } of results) {
    const forwarded = arrived.find((r) => lastText(r.body.messages).endsWith(q));
    assert.ok(forwarded, `request ${i} reached the upstream`);
    const got = forwarded.body.messages;
    assertSameShape(messages, got);
    assertRate(tokens(messages), tokens(got), 0.5);
    assert.ok(lastText(got).endsWith(q), `request ${i}: its own question`);
    assert.equal(data.choices[0].message.content, echoOf(got));
    assert.equal(Number(headers.get('x-terse-compressed-tokens')), tokens(got));
  }
});

test('a compressor failure forwards the prompt uncompressed and counts a fallback', async () => {
  const fallbacks = await metric('terse_compression_fallbacks_total', 'hasty');
  // A prompt the compressor has never seen (no cache hit) cannot be compressed within 1 ms.
  const messages = conversation('What did the hasty route forward?', 900);
  const { data, headers, forwarded } = await chat({ model: 'gpt-4o-hasty', messages });
  assert.deepEqual(forwarded.messages, messages);
  assert.equal(headers.get('x-terse-original-tokens'), null);
  assert.equal(data.choices[0].message.content, echoOf(messages));
  assert.equal(await metric('terse_compression_fallbacks_total', 'hasty'), fallbacks + 1);
});

test('requests that differ only in the question share byte-identical system and history', async () => {
  const a = await chat({ model: 'gpt-4o-mini', messages: conversation('Which bridge was rebuilt?', 7) });
  const b = await chat({ model: 'gpt-4o-mini', messages: conversation('Who paid the tolls in spring?', 7) });
  const ma = a.forwarded.messages;
  const mb = b.forwarded.messages;
  for (let i = 0; i < ma.length - 1; i++) {
    assert.equal(JSON.stringify(ma[i]), JSON.stringify(mb[i]), `messages[${i}] identical`);
  }
  assert.notEqual(JSON.stringify(ma.at(-1)), JSON.stringify(mb.at(-1)));
  const raw = (r) => upstream.received.find((x) => x.body === r).raw;
  const prefixOf = (s) => s.slice(0, s.indexOf(JSON.stringify(ma.at(-2))) + JSON.stringify(ma.at(-2)).length);
  assert.equal(prefixOf(raw(a.forwarded)), prefixOf(raw(b.forwarded)), 'same bytes up to the last message');
  assert.equal(b.headers.get('x-terse-cache'), 'hit', 'the stable parts came from the cache');
});

test('gRPC Chat is compressed the same way and reports it', async () => {
  const definition = protoLoader.loadSync(['terse/v1/gateway.proto'], {
    includeDirs: [path.resolve(import.meta.dirname, '../../proto')],
    keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true,
  });
  const { terse: { v1 } } = grpc.loadPackageDefinition(definition);
  const gateway = new v1.Gateway(`127.0.0.1:${terse.grpcPort}`, grpc.credentials.createInsecure());
  try {
    const messages = [
      { role: 'system', content: prose(200, 50) },
      { role: 'user', content: prose(150, 51) },
      { role: 'assistant', content: prose(100, 52) },
      { role: 'user', content: `${prose(150, 53)}\n\n${prose(150, 54)}\n\nWhere was the salt stored?` },
    ];
    const viaHttp = await chat({ model: 'gpt-4o-mini', messages });
    const before = upstream.received.length;
    const response = await new Promise((resolve, reject) => {
      gateway.Chat({ model: 'gpt-4o-mini', messages }, new grpc.Metadata(),
                   { deadline: new Date(Date.now() + 60_000) }, (err, r) => (err ? reject(err) : resolve(r)));
    });
    const forwarded = upstream.received[before].body.messages;
    assert.deepEqual(forwarded, viaHttp.forwarded.messages, 'the same compressed messages as over HTTP');
    const report = response.compression;
    assert.equal(report.applied, true);
    assert.equal(report.original_tokens, tokens(messages));
    assert.equal(report.compressed_tokens, tokens(forwarded));
    assertRate(report.original_tokens, report.compressed_tokens, 0.5);
    assert.ok(Math.abs(report.rate - report.compressed_tokens / report.original_tokens) < 1e-9);
    assert.match(response.choices[0].message.content, /Where was the salt stored\?$/);
  } finally {
    gateway.close();
  }
});

test('POST /v1/terse/compress answers with the compressed messages without calling the upstream', async () => {
  const messages = conversation('What did the council decide?', 11);
  const before = upstream.received.length;
  const r = await fetch(`${terse.baseURL}/terse/compress`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages }),
  });
  assert.equal(r.status, 200);
  const body = await r.json();
  assert.equal(upstream.received.length, before, 'no upstream call');
  assertSameShape(messages, body.messages);
  assertRate(tokens(messages), tokens(body.messages), 0.5);
  assert.equal(Number(r.headers.get('x-terse-compressed-tokens')), tokens(body.messages));
  // The same messages a chat completion would have forwarded.
  const viaChat = await chat({ model: 'gpt-4o-mini', messages });
  assert.deepEqual(viaChat.forwarded.messages, body.messages);
});

test('/v1/completions prompts are compressed', async () => {
  const prompt = `${prose(250, 60)}\n\n${prose(200, 61)}\n\nQ: What did the teachers write?\nA:`;
  const before = upstream.received.length;
  const { response } = await client.completions.create({ model: 'gpt-3.5-turbo-instruct', prompt, max_tokens: 5 })
    .withResponse();
  const forwarded = upstream.received[before];
  assert.ok(forwarded.url.endsWith('/completions'));
  const original = cl100k.encode(prompt).length;
  const compressed = cl100k.encode(forwarded.body.prompt).length;
  assertRate(original, compressed, 0.4);
  assert.equal(Number(response.headers.get('x-terse-original-tokens')), original);
  assert.equal(Number(response.headers.get('x-terse-compressed-tokens')), compressed);

  const prompts = [prose(150, 62), prose(150, 63)];
  const before2 = upstream.received.length;
  await client.completions.create({ model: 'gpt-3.5-turbo-instruct', prompt: prompts, max_tokens: 5 });
  const got = upstream.received[before2].body.prompt;
  assert.equal(got.length, 2);
  got.forEach((p, i) => assert.ok(cl100k.encode(p).length < cl100k.encode(prompts[i]).length));
});

// The whole lines of the pairs file. The gateway's writer thread may be in the middle of a line
// (a reader can see a long write land page by page), so text after the last newline is left out.
function recordedLines() {
  if (!fs.existsSync(pairsPath)) return [];
  const text = fs.readFileSync(pairsPath, 'utf8');
  return text.slice(0, text.lastIndexOf('\n') + 1).split('\n').filter(Boolean);
}

// The first recorded pair that satisfies `match`, waiting (bounded) for the writer thread.
async function recordedPair(match) {
  for (let i = 0; i < 100; i++) {
    const found = recordedLines().map((l) => JSON.parse(l)).find(match);
    if (found) return found;
    await new Promise((r) => setTimeout(r, 100));
  }
  return null;
}

test('record_alignment_pairs appends the original prompt and the answer, streamed or not', async () => {
  const messages = [
    { role: 'system', content: `Clerk. <terse:keep>${kKeep}</terse:keep>` },
    { role: 'user', content: `${prose(200, 70)}\n\n${prose(100, 71)}\n\nWhat is the alignment question?` },
  ];
  const { data, forwarded } = await chat({ model: 'gpt-4o-mini', messages });
  assert.ok(tokens(forwarded.messages) < tokens(messages), 'the upstream saw the compressed prompt');
  // The prompt as the small LM reads it: "role: text" lines of the original, markup removed.
  const want = `system: Clerk. ${kKeep}\nuser: ${messages[1].content}`;
  const pair = await recordedPair((p) => p.prompt === want);
  assert.ok(pair, 'a pair with the original prompt was recorded');
  assert.equal(pair.response, data.choices[0].message.content);
  assert.equal(pair.model, 'gpt-4o-mini');
  assert.equal(pair.route, 'half');
  assert.ok(pair.ts > 1.7e9);

  // A streamed answer is recorded whole.
  messages[1].content = `${prose(200, 72)}\n\nAnd the streamed question?`;
  const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages, stream: true });
  let text = '';
  for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
  const streamed = await recordedPair((p) => p.prompt.endsWith('And the streamed question?'));
  assert.ok(streamed, 'the streamed completion was recorded');
  assert.equal(streamed.response, text);

  // The streamed pair was the last one queued and it is in, so the file now ends with a whole
  // line. Every line is one whole JSON object of the shape tools/align.py reads; routes without
  // the setting record nothing.
  assert.ok(fs.readFileSync(pairsPath, 'utf8').endsWith('\n'));
  for (const l of recordedLines()) {
    const p = JSON.parse(l);
    assert.equal(typeof p.prompt, 'string');
    assert.equal(typeof p.response, 'string');
    assert.equal(p.route, 'half');
  }
});
