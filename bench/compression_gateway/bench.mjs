// What compression costs on the request's path, measured end to end over HTTP: a real
// `terse serve` with the echo provider (no network, no delay) and two routes that differ only in
// `compression.enabled`. Run through run.sh, which picks the binary and the model.
//
//   node bench/compression_gateway/bench.mjs --terse BIN --model-dir DIR [--quick] [--part latency|throughput]
//
// Prompts are chats of ~1k and ~4k target tokens (o200k_base, counted with npm tiktoken): a system
// prompt, two demonstrations (user/assistant turns), and a last user message of three documents
// and a question. "Cold" requests carry a fresh case number in every stable part, so nothing
// comes from the compressor's cache; "warm" requests repeat the system prompt, demonstrations and
// documents and vary only the question (the stable parts are cache hits; the documents are
// compressed again, ranked by the new question).
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startTerse as startTerseProcess } from '../../tests/e2e/harness.mjs';
import { kWords, proseOfTokens, tokens } from '../../tests/e2e/prompts.mjs';

const here = import.meta.dirname;
const sourceDir = path.resolve(here, '../..');

const { values: args } = parseArgs({
  options: {
    terse: { type: 'string', default: path.join(sourceDir, 'build/proxy/terse') },
    'model-dir': { type: 'string', default: 'tests/fixtures/tiny-lm' },
    quick: { type: 'boolean', default: false },
    part: { type: 'string', default: 'all' },  // latency | throughput | all
    threads: { type: 'string', default: '2' },
  },
});
const kLatencyRequests = args.quick ? 5 : 12;  // per case, sequential
const kThroughputSeconds = args.quick ? 2 : 5;  // per run
const kRate = 0.5;

// ---- Prompts.

// The shared vocabulary plus a few numbers, so the prose has digits to tokenize.
const kBenchWords = [...kWords, ...'in 1841 when prices rose by 12 percent'.split(' ')];

// A chat of about `total` tokens; `nonce` makes every stable part unique (cold cache).
function chat(total, question, nonce = '') {
  const tag = nonce ? `Case ${nonce}. ` : '';
  const p = (share, seed) => proseOfTokens(Math.round(total * share), seed, kBenchWords);
  return [
    { role: 'system', content: tag + p(0.15, 1) },
    { role: 'user', content: tag + p(0.15, 2) },
    { role: 'assistant', content: tag + p(0.12, 3) },
    { role: 'user', content: tag + p(0.15, 4) },
    { role: 'assistant', content: tag + p(0.12, 5) },
    { role: 'user', content: `${p(0.1, 6)}\n\n${p(0.1, 7)}\n\n${p(0.1, 8)}\n\n${question}` },
  ];
}

// Bodies are built once per size; the cold ones get their nonce by string replacement, which
// costs the load generator nothing next to a compression.
function bodies(total) {
  const cold = JSON.stringify({ model: 'MODEL', messages: chat(total, 'What did QUESTION carry?', '@NONCE@') });
  const warm = JSON.stringify({ model: 'MODEL', messages: chat(total, 'What did QUESTION carry?') });
  let n = 0;
  const pick = (template, model) => () => {
    n++;
    return template.replace('"MODEL"', JSON.stringify(model)).replaceAll('@NONCE@', `${process.pid}-${n}-${Date.now()}`)
      .replace('QUESTION', `caravan ${n}`);
  };
  return {
    tokens: tokens(chat(total, 'What did caravan 1 carry?')),
    off: pick(warm, 'bench-off'),
    cold: pick(cold, 'bench-on'),
    warm: pick(warm, 'bench-on'),
  };
}

// ---- terse.

async function startTerse(maxBatch) {
  return startTerseProcess(`
providers:
  - { name: echo, kind: echo, echo_delay_ms: 0 }
routes:
  - { name: off, model: bench-off, provider: echo }
  - name: on
    model: bench-on
    provider: echo
    compression: { enabled: true, rate: ${kRate}, min_prompt_tokens: 0, timeout_ms: 120000 }
compressor:
  model_dir: ${args['model-dir']}
  threads: ${args.threads}
  max_batch_size: ${maxBatch}
  workers: 8
  queue_capacity: 256
`, { bin: args.terse, logLevel: 'error' });
}

// ---- Load.

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

function post(port, body) {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const req = http.request({ host: '127.0.0.1', port, path: '/v1/chat/completions', method: 'POST', agent,
                               headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
                             (res) => {
                               res.resume();
                               res.on('end', () => resolve({
                                 ms: Number(process.hrtime.bigint() - started) / 1e6,
                                 status: res.statusCode,
                                 rate: Number(res.headers['x-terse-rate'] ?? NaN),
                                 cache: res.headers['x-terse-cache'],
                                 compressMs: Number(res.headers['x-terse-compress-ms'] ?? NaN),
                               }));
                             });
    req.setTimeout(120_000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

function pct(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
}
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;

// Sequential requests, the cases interleaved so that load drifting on a shared machine hits each
// case alike.
async function latency(port, cases) {
  const results = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
  for (const make of Object.values(cases)) await post(port, make());  // warm-up (and fills the cache)
  const budget = Date.now() + 40_000;  // a slow model gets fewer rounds (at least 5)
  for (let i = 0; i < kLatencyRequests && (i < 5 || Date.now() < budget); i++) {
    for (const [name, make] of Object.entries(cases)) {
      const r = await post(port, make());
      if (r.status !== 200) throw new Error(`${name}: HTTP ${r.status}`);
      results[name].push(r);
    }
  }
  return results;
}

async function throughput(port, make, clients) {
  const deadline = Date.now() + kThroughputSeconds * 1000;
  const done = [];
  let errors = 0;
  await Promise.all(Array.from({ length: clients }, async () => {
    while (Date.now() < deadline) {
      try {
        const r = await post(port, make());
        if (r.status === 200) done.push(r); else errors++;
      } catch { errors++; }
    }
  }));
  const seconds = (Date.now() - deadline) / 1000 + kThroughputSeconds;
  const compressed = done.filter((r) => !Number.isNaN(r.rate)).length;
  return { rps: done.length / seconds, p50: pct(done.map((r) => r.ms), 0.5), errors, compressed, n: done.length };
}

// ---- Run.

const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : '-');
const started = Date.now();
const cardPath = path.resolve(sourceDir, args['model-dir'], 'model.json');
const card = fs.existsSync(cardPath) ? JSON.parse(fs.readFileSync(cardPath, 'utf8')) : {};
const arch = card.architecture ?? {};
const shape = card.name ? `${card.name}: d${arch.d_model} x ${arch.n_layer} layers, context ${arch.max_context}`
                        : 'no model.json';
console.log(`model: ${args['model-dir']} (${shape}); LibTorch threads ${args.threads}; compressor workers 8; ` +
            `route rate ${kRate}; upstream: echo provider, no delay; machine: ${os.cpus().length} cores, ` +
            `load ${os.loadavg()[0].toFixed(1)}`);

const sizes = { '1k': bodies(1000), '4k': bodies(4000) };
console.log(`prompts: 1k = ${sizes['1k'].tokens} tokens, 4k = ${sizes['4k'].tokens} tokens (o200k_base)\n`);

// Latency, batching on (the default max_batch_size 8).
let terse = await startTerse(8);
const lat = {};
for (const [size, b] of Object.entries(args.part === 'throughput' ? {} : sizes)) {
  lat[size] = await latency(terse.httpPort, { off: b.off, cold: b.cold, warm: b.warm });
}
if (args.part !== 'throughput') {
console.log(`End-to-end latency, one client, up to ${kLatencyRequests} requests per case (ms; x-terse-compress-ms is the step alone)`);
console.log('size  case                   p50     mean     p90   compress_ms p50   rate   cache');
for (const size of Object.keys(sizes)) {
  for (const [name, label] of [['off', 'compression off'], ['cold', 'on, cold cache'], ['warm', 'on, warm cache']]) {
    const rs = lat[size][name];
    const ms = rs.map((r) => r.ms);
    const hits = rs.filter((r) => r.cache === 'hit').length;
    console.log(`${size.padEnd(5)} ${label.padEnd(18)} ${f1(pct(ms, 0.5)).padStart(7)} ${f1(mean(ms)).padStart(8)} ` +
                `${f1(pct(ms, 0.9)).padStart(7)} ${f1(pct(rs.map((r) => r.compressMs), 0.5)).padStart(17)} ` +
                `${name === 'off' ? '    -' : mean(rs.map((r) => r.rate)).toFixed(3).padStart(6)}   ` +
                `${name === 'off' ? '-' : `${hits}/${rs.length} hit`}`);
  }
}
console.log();
for (const size of Object.keys(sizes)) {
  const p50 = (name) => pct(lat[size][name].map((r) => r.ms), 0.5);
  console.log(`added latency p50, ${size}: cold +${f1(p50('cold') - p50('off'))} ms, warm +${f1(p50('warm') - p50('off'))} ms` +
              ` (warm/cold ${(p50('warm') - p50('off')) / (p50('cold') - p50('off')) >= 0 ? ((p50('warm') - p50('off')) / (p50('cold') - p50('off'))).toFixed(2) : '-'})`);
}

}

if (args.part === 'latency') { await terse.stop(); agent.destroy(); process.exit(0); }

// Throughput: batching on (8) and off (1), 8 and 32 clients, cold and warm, 1k prompts.
const tput = {};
for (const batch of [8, 1]) {
  if (batch !== 8) terse = await startTerse(batch);
  for (const [name, make] of [['cold', sizes['1k'].cold], ['warm', sizes['1k'].warm]]) {
    for (const clients of [8, 32]) tput[`${batch}/${name}/${clients}`] = await throughput(terse.httpPort, make, clients);
  }
  if (batch === 8) {
    for (const clients of [8, 32]) tput[`off/${clients}`] = await throughput(terse.httpPort, sizes['1k'].off, clients);
  }
  await terse.stop();
}
console.log(`\nThroughput, 1k prompts, ${kThroughputSeconds} s per run (requests/s; p50 latency ms)`);
console.log('max_batch_size  cache          8 clients            32 clients');
// Every compressed run must have compressed every request (no fallback hid the cost).
const cell = (r, compressing = true) => `${f1(r.rps).padStart(7)} (p50 ${f1(r.p50).padStart(6)})` +
  `${r.errors ? ` ${r.errors} err` : ''}${compressing && r.compressed < r.n ? ` ${r.n - r.compressed} uncompressed` : ''}`;
for (const batch of [8, 1]) {
  for (const name of ['cold', 'warm']) {
    console.log(`${String(batch).padEnd(15)} ${name.padEnd(6)} ${cell(tput[`${batch}/${name}/8`]).padStart(22)} ${cell(tput[`${batch}/${name}/32`]).padStart(22)}`);
  }
}
console.log(`${'off'.padEnd(15)} ${'-'.padEnd(6)} ${cell(tput['off/8'], false).padStart(22)} ${cell(tput['off/32'], false).padStart(22)}`);
console.log();
for (const clients of [8, 32]) {
  const r = (k) => tput[k].rps;
  console.log(`ratios at ${clients} clients: batching on/off cold ${(r(`8/cold/${clients}`) / r(`1/cold/${clients}`)).toFixed(2)}, ` +
              `warm ${(r(`8/warm/${clients}`) / r(`1/warm/${clients}`)).toFixed(2)}; warm/cold (batch 8) ` +
              `${(r(`8/warm/${clients}`) / r(`8/cold/${clients}`)).toFixed(2)}; compressed/uncompressed (batch 8, warm) ` +
              `${(r(`8/warm/${clients}`) / r(`off/${clients}`)).toFixed(3)}`);
}
console.log(`\ntotal ${((Date.now() - started) / 1000).toFixed(0)} s`);
agent.destroy();
