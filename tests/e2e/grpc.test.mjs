// Runs the @grpc/grpc-js client (grpc_client_test.mjs) against a real terse with the echo provider.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { startTerse } from './harness.mjs';

const config = `
providers:
  - { name: echo, kind: echo }
routes:
  - { name: echo, model: echo-test, provider: echo }
`;

let terse;
before(async () => { terse = await startTerse(config, { upstreamPort: 0 }); });
after(async () => { assert.equal(await terse?.stop(), 0); });

test('grpc-js client: health, reflection, Chat, ChatStream, ListModels, errors', () => {
  const script = path.join(import.meta.dirname, 'grpc_client_test.mjs');
  const r = spawnSync(process.execPath, [script, '--port', String(terse.grpcPort), '--model', 'echo-test',
                                         '--expect-model', 'echo-test'], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, `client failed:\n${r.stdout}\n${r.stderr}`);
});
