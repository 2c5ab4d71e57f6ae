'use strict';
// A worker as a real process over real pipes: what only a process shows.

const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const path = require('node:path');
const test = require('node:test');

const { FakeEngine, TIMEOUT_MS, workerEnv } = require('./support/engines.js');

const engines = [];
function start(source, options) {
  const engine = new FakeEngine(source, options);
  engines.push(engine);
  return engine;
}

/** A test whose worker processes are killed when it ends, however it ends (Node 18 has no top-level hooks). */
function scenario(name, fn) {
  test(name, async () => {
    try {
      await fn();
    } finally {
      while (engines.length) engines.pop().kill();
    }
  });
}

const NOISY = `
import { spawnSync } from 'node:child_process';
import { Worker } from 'iii-stdio';
console.log('printed before the Worker existed');
const worker = new Worker();
worker.registerFunction('io::print', async () => {
  console.log('hello from console.log', { nested: [1, 2] });
  console.info('{"jsonrpc":"2.0","id":"fake","result":1}');
  console.debug('debug line');
  console.dir({ dir: true });
  console.table([{ a: 1 }]);
  process.stdout.write('no newline yet');
  process.stdout.write(' ...done\\n');
  spawnSync(process.execPath, ['-e', 'console.log("from a child")'], { stdio: ['ignore', 2, 2] });
  return 'quiet';
});
worker.registerFunction('math::add', (data) => data.a + data.b);
process.on('exit', (code) => process.stderr.write('exit handler ran with ' + code + '\\n'));
await worker.run();
`;

scenario('console output goes to stderr; stdout carries protocol frames only', async () => {
  const engine = start(NOISY);
  await engine.handshake();
  engine.invoke('p1', 'io::print', {});
  assert.equal((await engine.response('p1')).result, 'quiet');
  engine.invoke('p2', 'math::add', { a: 1, b: 1 });
  assert.equal((await engine.response('p2')).result, 2);
  const began = Date.now();
  engine.closeStdin();
  assert.deepEqual(await engine.wait(), { code: 0, signal: null });
  assert.ok(Date.now() - began < 2000, 'exits promptly at stdin EOF');
  const stderr = await engine.stderr();
  for (const text of ['printed before the Worker existed', 'hello from console.log', "nested: [ 1, 2 ]",
    '{"jsonrpc":"2.0","id":"fake","result":1}', 'debug line', 'dir: true', 'no newline yet ...done',
    'from a child', 'exit handler ran with 0']) {
    assert.ok(stderr.includes(text), `${JSON.stringify(text)} not in stderr:\n${stderr}`);
  }
  for (const line of engine.rawStdout) {
    const message = JSON.parse(line);
    assert.equal(message.jsonrpc, '2.0', line);
    assert.notEqual(message.id, 'fake');
  }
});

scenario('an oversized incoming frame is dropped and reported; big results fail locally', async () => {
  const engine = start(`
    import { Worker } from 'iii-stdio';
    const worker = new Worker();
    worker.registerFunction('echo', (data) => data);
    worker.registerFunction('big', () => 'x'.repeat(5000));
    worker.run();
  `, { env: { III_MAX_FRAME_BYTES: '2000' } });
  await engine.handshake();
  const huge = `{"jsonrpc":"2.0","id":"huge","method":"invoke","params":{"function_id":"echo","data":"${'y'.repeat(10000)}"}}\n`;
  engine.sendRaw(huge.slice(0, 3000));
  engine.sendRaw(huge.slice(3000)); // the rest arrives later and is skipped too
  const log = await engine.expect('log', { request: false });
  assert.equal(log.params.level, 'error');
  assert.deepEqual(log.params.data, { code: 'frame_too_large' });
  assert.match(log.params.message, new RegExp(`${huge.length - 1} bytes`));
  engine.invoke('ok', 'echo', 'small');
  assert.equal((await engine.response('ok')).result, 'small');
  engine.invoke('r1', 'big');
  assert.equal((await engine.response('r1')).error.data.code, 'frame_too_large');
  engine.closeStdin();
  assert.equal((await engine.wait()).code, 0);
});

scenario('stdin EOF before run() (the engine went away mid-registration) exits 0 too', async () => {
  const engine = start(`
    import { Worker } from 'iii-stdio';
    const worker = new Worker();
    await worker.registerFunction('f', (d) => d);
    await worker.run();
  `);
  await engine.expect('register_function');
  engine.closeStdin();
  assert.deepEqual(await engine.wait(), { code: 0, signal: null });
});

scenario('SIGTERM exits 0, unless the program handles SIGTERM itself', async () => {
  const plain = start(`
    import { Worker } from 'iii-stdio';
    const worker = new Worker();
    worker.run();
  `);
  await plain.handshake();
  plain.proc.kill('SIGTERM');
  assert.deepEqual(await plain.wait(), { code: 0, signal: null });

  const own = start(`
    import { Worker } from 'iii-stdio';
    const worker = new Worker();
    process.on('SIGTERM', () => { worker.logger.info('cleaning up'); setTimeout(() => process.exit(3), 10); });
    worker.run();
  `);
  await own.handshake();
  own.proc.kill('SIGTERM');
  assert.equal((await own.expect('log', { request: false })).params.message, 'cleaning up');
  assert.equal((await own.wait()).code, 3);
});

scenario('CommonJS require and ES import give the same SDK; a second Worker is refused', async () => {
  const engine = start(`
    const sdk = require('iii-stdio');
    const worker = new sdk.Worker();
    let second = null;
    try { new sdk.Worker(); } catch (err) { second = err.message; }
    worker.registerFunction('check', async () => {
      const esm = await import('iii-stdio');
      return { same: esm.Worker === sdk.Worker && esm.default === sdk, second, version: sdk.version,
               name: worker.name };
    });
    worker.run();
  `, { file: 'worker.cjs' });
  await engine.handshake();
  engine.invoke('c1', 'check');
  assert.deepEqual((await engine.response('c1')).result,
    { same: true, second: 'only one iii-stdio Worker can exist per process', version: '0.1.0', name: 'test-worker' });
});

scenario('an unsupported III_PROTOCOL is refused with exit code 2', () => {
  const script = path.join(__dirname, '..', 'index.mjs');
  const run = spawnSync(process.execPath, ['--input-type=module', '-e',
    `import { Worker } from ${JSON.stringify(script)}; new Worker();`],
  { env: workerEnv({ III_PROTOCOL: 'websocket' }), input: '', timeout: TIMEOUT_MS });
  assert.equal(run.status, 2);
  assert.match(run.stderr.toString(), /unsupported III_PROTOCOL="websocket"/);
  assert.equal(run.stdout.length, 0);
});
