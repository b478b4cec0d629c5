// Shared pieces of the end-to-end tests: a fake OpenAI-compatible upstream that records what it
// received, and a real `terse serve` process started on free loopback ports.
import http from 'node:http';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';

export const sourceDir = process.env.TERSE_SOURCE_DIR ?? path.resolve(import.meta.dirname, '../..');
export const terseBin =
  process.env.TERSE_BIN ?? path.join(process.env.TERSE_BINARY_DIR ?? path.join(sourceDir, 'build'),
                                     'proxy', 'terse');

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// Resolves once `predicate()` is true, checking every 20 ms; rejects after `timeoutMs`.
export async function waitUntil(predicate, timeoutMs = 5_000, what = 'condition') {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// The fake upstream. `behaviour(req, body)` may return {status, json}, {sse: [...chunks], delayMs},
// {reset: true} or {stall: true}; the default answers with the last user message's text.
// A stream may also stop early: `resetAfter: n` writes n chunks then resets the connection;
// `stallAfter: n` writes n chunks then sends nothing more until the client leaves.
// Each entry of `received` also says whether the client closed its connection before the answer
// was complete (`clientClosed`), e.g. because terse cancelled the call.
export async function startFakeUpstream(behaviour = () => null) {
  const received = [];
  const sockets = new Set();
  const server = http.createServer(async (req, res) => {
    let raw = '';
    for await (const piece of req) raw += piece;
    let body = null;
    try { body = raw ? JSON.parse(raw) : null; } catch { body = raw; }
    const entry = { method: req.method, url: req.url, headers: req.headers, body, raw, clientClosed: false };
    received.push(entry);
    res.on('close', () => { if (!res.writableFinished) entry.clientClosed = true; });
    const plan = behaviour(req, body) ?? defaultAnswer(req, body);
    if (plan.reset) { req.socket.resetAndDestroy(); return; }
    if (plan.stall) return;  // the socket is destroyed when the server closes
    if (plan.sse) {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      for (const [i, chunk] of plan.sse.entries()) {
        if (i === plan.resetAfter) { req.socket.resetAndDestroy(); return; }
        if (i === plan.stallAfter) return;
        if (res.destroyed) return;
        res.write(`data: ${typeof chunk === 'string' ? chunk : JSON.stringify(chunk)}\n\n`);
        if (plan.delayMs) await new Promise((r) => setTimeout(r, plan.delayMs));
      }
      res.end('data: [DONE]\n\n');
      return;
    }
    res.writeHead(plan.status ?? 200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(plan.json));
  });
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: server.address().port,
    received,
    openConnections: () => sockets.size,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

function lastUserText(body) {
  const msgs = body?.messages ?? [];
  for (let i = msgs.length - 1; i >= 0; i--) {
    if (msgs[i].role !== 'user') continue;
    const c = msgs[i].content;
    return typeof c === 'string' ? c : (c ?? []).filter((p) => p.type === 'text').map((p) => p.text).join(' ');
  }
  return '';
}

export function chatCompletion(model, text, usage = { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 }) {
  return {
    id: 'chatcmpl-fake', object: 'chat.completion', created: 1700000000, model,
    choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' }],
    usage,
  };
}

export function chatChunks(model, words, includeUsage) {
  const base = { id: 'chatcmpl-fake', object: 'chat.completion.chunk', created: 1700000000, model };
  const chunks = [{ ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] }];
  for (const w of words) chunks.push({ ...base, choices: [{ index: 0, delta: { content: w }, finish_reason: null }] });
  chunks.push({ ...base, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] });
  if (includeUsage) {
    chunks.push({ ...base, choices: [], usage: { prompt_tokens: 7, completion_tokens: words.length, total_tokens: 7 + words.length } });
  }
  return chunks;
}

function defaultAnswer(req, body) {
  if (req.url.endsWith('/chat/completions')) {
    const text = `echo: ${lastUserText(body)}`;
    if (body?.stream) {
      return { sse: chatChunks(body.model, text.split(/(?<= )/), body?.stream_options?.include_usage), delayMs: 5 };
    }
    return { json: chatCompletion(body.model, text) };
  }
  if (req.url.endsWith('/embeddings')) {
    // [0.1, 0.2] as floats, or as little-endian float32 in base64 when asked for that.
    const embedding = body?.encoding_format === 'base64'
      ? Buffer.from(new Float32Array([0.1, 0.2]).buffer).toString('base64') : [0.1, 0.2];
    return { json: { object: 'list', data: [{ object: 'embedding', index: 0, embedding }], model: body.model, usage: { prompt_tokens: 2, total_tokens: 2 } } };
  }
  if (req.url.endsWith('/completions')) {
    return { json: { id: 'cmpl-fake', object: 'text_completion', created: 1700000000, model: body.model, choices: [{ index: 0, text: 'ok', finish_reason: 'stop' }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } } };
  }
  return { status: 404, json: { error: { message: 'not found', type: 'invalid_request_error' } } };
}

// Starts terse with a config made from `yaml` (a string; "${UPSTREAM}" is replaced by the fake
// upstream's base URL). Resolves once the HTTP port answers /healthz. `bin` picks another binary
// (the benchmark's --terse), `logLevel` terse's --log-level.
export async function startTerse(yaml, { upstreamPort, env = {}, bin = terseBin, logLevel = 'warn' } = {}) {
  const httpPort = await freePort();
  const grpcPort = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'terse-e2e-'));
  const configPath = path.join(dir, 'terse.yaml');
  fs.writeFileSync(configPath, yaml.replaceAll('${UPSTREAM}', `http://127.0.0.1:${upstreamPort}/v1`));
  const child = spawn(bin, ['serve', '--config', configPath, '--http-port', String(httpPort),
                            '--grpc-port', String(grpcPort), '--log-level', logLevel],
                      { cwd: sourceDir, env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const exited = new Promise((r) => child.on('exit', (code) => r(code)));
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`terse exited with ${child.exitCode}: ${stderr}`);
    try {
      const r = await fetch(`http://127.0.0.1:${httpPort}/healthz`);
      if (r.ok) break;
    } catch { /* not up yet */ }
    if (Date.now() > deadline) { child.kill('SIGKILL'); throw new Error(`terse did not start: ${stderr}`); }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    httpPort, grpcPort, baseURL: `http://127.0.0.1:${httpPort}/v1`,
    pid: child.pid,
    stderr: () => stderr,
    alive: () => child.exitCode === null,
    // The exit code once terse exited (null if killed by a signal).
    exited,
    signal(name) { if (child.exitCode === null) child.kill(name); },
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(timer);
      fs.rmSync(dir, { recursive: true, force: true });
      return code;
    },
  };
}
