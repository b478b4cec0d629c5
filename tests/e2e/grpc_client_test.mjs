// A gRPC client in another language (@grpc/grpc-js, protos loaded at run time) against a running
// terse: Chat, ChatStream, ListModels, a refused request, grpc.health.v1 and server reflection.
//
//   node tests/e2e/grpc_client_test.mjs --port 50051 [--host 127.0.0.1] [--model echo-test]
//                                       [--expect-model NAME]
//
// Works against any route that answers (the `echo` provider answers with the prompt it received,
// so the test checks that the user's words come back). Exit code 0 when every test passes.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { parseArgs } from 'node:util';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    model: { type: 'string', default: 'echo-test' },
    'expect-model': { type: 'string' },
  },
});
if (!args.port) {
  console.error('usage: grpc_client_test.mjs --port N [--host H] [--model M] [--expect-model M]');
  process.exit(2);
}

const here = import.meta.dirname;
const definition = protoLoader.loadSync(
  ['terse/v1/gateway.proto', 'grpc/health/v1/health.proto',
   'grpc/reflection/v1alpha/reflection.proto'],
  {
    includeDirs: [path.resolve(here, '../../proto'), path.resolve(here, 'protos')],
    keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true,
  });
const loaded = grpc.loadPackageDefinition(definition);
const address = `${args.host}:${args.port}`;
const credentials = grpc.credentials.createInsecure();
const gateway = new loaded.terse.v1.Gateway(address, credentials);
const health = new loaded.grpc.health.v1.Health(address, credentials);
const reflection = new loaded.grpc.reflection.v1alpha.ServerReflection(address, credentials);

after(() => {
  gateway.close();
  health.close();
  reflection.close();
});

const deadline = () => new Date(Date.now() + 20_000);

function metadata(requestId) {
  const md = new grpc.Metadata();
  md.set('authorization', 'Bearer sk-e2e-not-a-real-key');
  if (requestId) md.set('x-request-id', requestId);
  return md;
}

function unary(client, method, request, md = new grpc.Metadata()) {
  return new Promise((resolve, reject) => {
    let headers = null;
    const call = client[method](request, md, { deadline: deadline() }, (err, response) => {
      if (err) reject(err);
      else resolve({ response, headers });
    });
    call.on('metadata', (m) => { headers = m; });
  });
}

function chatRequest(text, extra = {}) {
  return {
    model: args.model,
    messages: [
      { role: 'system', content: 'You are terse.' },
      { role: 'user', content: text },
    ],
    max_tokens: 64,
    extra: { fields: extra },
  };
}

test('health: the server and the Gateway service are SERVING', async () => {
  for (const service of ['', 'terse.v1.Gateway']) {
    const { response } = await unary(health, 'Check', { service });
    assert.equal(response.status, 'SERVING', `service "${service}"`);
  }
});

test('reflection lists the Gateway and health services', async () => {
  const services = await new Promise((resolve, reject) => {
    const call = reflection.ServerReflectionInfo({ deadline: deadline() });
    call.on('data', (r) => {
      if (r.error_response) reject(new Error(r.error_response.error_message));
      else resolve(r.list_services_response.service.map((s) => s.name));
      call.end();
    });
    call.on('error', reject);
    call.write({ host: '', list_services: '*' });
  });
  assert.ok(services.includes('terse.v1.Gateway'), services.join(', '));
  assert.ok(services.includes('grpc.health.v1.Health'), services.join(', '));
});

test('Chat answers, echoes x-request-id and carries extra fields', async () => {
  const text = 'The quick brown fox jumps over the lazy dog';
  const { response, headers } = await unary(
    gateway, 'Chat', chatRequest(text, { user: { string_value: 'e2e-user' } }),
    metadata('e2e-grpc-chat-1'));
  assert.equal(response.choices.length, 1);
  const choice = response.choices[0];
  assert.equal(choice.message.role, 'assistant');
  assert.match(choice.message.content, /quick brown fox/);
  assert.ok(choice.finish_reason.length > 0, 'finish_reason is set');
  assert.ok(response.usage.prompt_tokens > 0, 'usage.prompt_tokens');
  assert.equal(response.usage.total_tokens,
               response.usage.prompt_tokens + response.usage.completion_tokens);
  assert.deepEqual(headers.get('x-request-id'), ['e2e-grpc-chat-1']);
});

test('ChatStream sends several chunks, usage on the last', async () => {
  const text = 'one two three four five six seven';
  const chunks = await new Promise((resolve, reject) => {
    const got = [];
    const call = gateway.ChatStream(chatRequest(text), metadata(), { deadline: deadline() });
    call.on('data', (c) => got.push(c));
    call.on('error', reject);
    call.on('end', () => resolve(got));
  });
  assert.ok(chunks.length >= 3, `got ${chunks.length} chunks`);
  const content = chunks.flatMap((c) => c.choices).map((c) => c.delta?.content ?? '').join('');
  assert.match(content, /one two three four five six seven/);
  const last = chunks.at(-1);
  assert.equal(last.choices.length, 0, 'the usage chunk has no choices');
  assert.ok(last.usage && last.usage.completion_tokens > 0, 'usage on the last chunk');
  for (const c of chunks.slice(0, -1)) {
    assert.ok(!c.usage || c.usage.total_tokens === 0, 'usage only on the last chunk');
  }
  const finish = chunks.flatMap((c) => c.choices).map((c) => c.finish_reason).filter(Boolean);
  assert.deepEqual(finish, ['stop']);
});

test('ListModels answers with the routes\' models', async () => {
  const { response } = await unary(gateway, 'ListModels', {});
  assert.ok(Array.isArray(response.models));
  if (args['expect-model']) {
    assert.ok(response.models.some((m) => m.id === args['expect-model']),
              JSON.stringify(response.models));
  }
});

test('a message without a role is INVALID_ARGUMENT', async () => {
  const request = { model: args.model, messages: [{ content: 'no role' }] };
  await assert.rejects(unary(gateway, 'Chat', request, metadata()), (err) => {
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
    assert.match(err.details, /role/);
    return true;
  });
});
