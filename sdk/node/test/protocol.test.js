'use strict';
// The protocol driven in-process: a Worker on an in-memory transport, the test plays the engine.

const assert = require('node:assert/strict');
const test = require('node:test');

const { InvocationError, State, Streams, currentInvocation, ops } = require('../lib/index.js');
const { memoryEngine, rpc } = require('./support/engines.js');

function basic(options) {
  const engine = memoryEngine(options);
  const { worker } = engine;
  worker.registerFunction('math::add', (data) => data.a + data.b, { description: 'adds' });
  worker.registerFunction('math::add_async', async (data) => {
    await new Promise((resolve) => setImmediate(resolve));
    return data.a + data.b;
  });
  worker.registerFunction('ctx::whoami', async (data, invocation) => {
    await null;
    const current = currentInvocation();
    assert.equal(current, invocation);
    return [current.invocationId, current.functionId, current.traceparent, current.baggage, current.metadata];
  });
  worker.registerFunction('fail::boom', () => { throw new TypeError('boom'); });
  worker.registerFunction('fail::async', async () => { throw new RangeError('later'); });
  worker.registerFunction('fail::custom', () => { throw new InvocationError('invalid_params', 'a is required'); });
  worker.registerFunction('fail::string', () => { throw 'just text'; }); // eslint-disable-line no-throw-literal
  worker.registerFunction('none', () => undefined);
  worker.run();
  return engine;
}

test('registrations are answered, then ready; sync and async handlers; the invocation context', async () => {
  const engine = basic();
  const regs = await engine.handshake();
  assert.deepEqual(regs.map((r) => r.method), Array(8).fill('register_function'));
  assert.deepEqual(regs[0].params, { id: 'math::add', description: 'adds' });
  assert.equal(new Set(regs.map((r) => r.id)).size, 8);

  engine.invoke('inv-1', 'math::add', { a: 2, b: 3 });
  assert.deepEqual(await engine.response('inv-1'), { jsonrpc: '2.0', id: 'inv-1', result: 5 });
  engine.invoke('inv-2', 'math::add_async', { a: 4, b: 5 });
  assert.equal((await engine.response('inv-2')).result, 9);
  engine.invoke('inv-3', 'ctx::whoami', null, { traceparent: '00-abc-def-01', baggage: 'k=v', metadata: { m: 1 } });
  assert.deepEqual((await engine.response('inv-3')).result, ['inv-3', 'ctx::whoami', '00-abc-def-01', 'k=v', { m: 1 }]);
  engine.invoke('inv-4', 'none');
  assert.deepEqual(await engine.response('inv-4'), { jsonrpc: '2.0', id: 'inv-4', result: null });
  assert.equal(currentInvocation(), null);
});

test('ready waits for registrations still in flight', async () => {
  const engine = memoryEngine();
  engine.worker.registerFunction('a', () => 1);
  engine.worker.registerTrigger('cron', 'a', { expression: '* * * * * *' });
  engine.worker.run();
  const first = await engine.expect('register_function');
  const second = await engine.expect('register_trigger'); // pipelined: the engine applies them in order
  engine.reply(second, { id: 't-1' });
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(engine.inbox.items.length, 0, 'no ready before every registration is answered');
  engine.reply(first);
  await engine.expect('ready', { request: false });
});

test('handler errors carry the type, message and stack; chosen codes pass through', async () => {
  const engine = basic();
  await engine.handshake();

  engine.invoke('e1', 'fail::boom', {});
  let error = (await engine.response('e1')).error;
  assert.equal(error.code, -32000);
  assert.equal(error.message, 'TypeError: boom');
  assert.equal(error.data.code, 'invocation_failed');
  assert.match(error.data.stacktrace, /^TypeError: boom\n\s+at .*protocol\.test\.js/);
  assert.doesNotMatch(error.data.stacktrace, /lib[\\/]dispatch\.js|async_hooks/); // the SDK's frames are dropped

  engine.invoke('e2', 'fail::async', {});
  error = (await engine.response('e2')).error;
  assert.equal(error.message, 'RangeError: later');
  assert.match(error.data.stacktrace, /RangeError: later/);

  engine.invoke('e3', 'fail::custom', {});
  assert.deepEqual((await engine.response('e3')).error,
    { code: -32000, message: 'a is required', data: { code: 'invalid_params' } });

  engine.invoke('e4', 'fail::string', {});
  assert.deepEqual((await engine.response('e4')).error,
    { code: -32000, message: 'Error: just text', data: { code: 'invocation_failed' } });

  engine.invoke('e5', 'nope::missing', {});
  assert.equal((await engine.response('e5')).error.data.code, 'function_not_found');

  engine.send({ jsonrpc: '2.0', id: 'e6', method: 'invoke', params: { data: 1 } });
  assert.deepEqual((await engine.response('e6')).error,
    { code: -32602, message: 'invoke needs params.function_id', data: { code: 'invalid_params' } });
});

test('results that cannot be sent become errors', async () => {
  const engine = memoryEngine({ maxFrameBytes: 2000 });
  engine.worker.registerFunction('big', () => 'x'.repeat(5000));
  engine.worker.registerFunction('bigint', () => ({ n: 10n }));
  engine.worker.registerFunction('cycle', () => { const o = {}; o.o = o; return o; });
  engine.worker.run();
  await engine.handshake();
  engine.invoke('r1', 'big');
  const big = (await engine.response('r1')).error;
  assert.equal(big.data.code, 'frame_too_large');
  assert.match(big.message, /III_MAX_FRAME_BYTES=2000/);
  engine.invoke('r2', 'bigint');
  assert.equal((await engine.response('r2')).error.data.code, 'invocation_failed');
  engine.invoke('r3', 'cycle');
  assert.match((await engine.response('r3')).error.message, /not JSON serializable/);
});

test('oversized and malformed input is reported and reading goes on', async () => {
  const engine = basic();
  await engine.handshake();
  engine.oversized(123456);
  const log = await engine.expect('log', { request: false });
  assert.equal(log.params.level, 'error');
  assert.deepEqual(log.params.data, { code: 'frame_too_large' });
  assert.match(log.params.message, /123456 bytes/);

  engine.sendRaw('{not json\n');
  let error = await engine.next();
  assert.equal(error.id, null);
  assert.equal(error.error.code, -32700);
  assert.equal(error.error.data.code, 'parse_error');
  engine.sendBytes(Buffer.from([0xff, 0xfe]));
  assert.equal((await engine.next()).error.code, -32700);
  engine.sendRaw('   \r\n');  // blank lines are skipped
  engine.send({ jsonrpc: '2.0', id: 7, method: 'frobnicate', params: {} });
  assert.equal((await engine.response(7)).error.code, -32601);
  engine.send({ jsonrpc: '2.0', method: 'frobnicate' }); // unknown notification: ignored
  engine.send({ id: 8, method: 'invoke' }); // no "jsonrpc"
  assert.equal((await engine.response(8)).error.code, -32600);
  engine.send({ jsonrpc: '2.0', id: true, method: 'invoke' }); // bad id
  error = await engine.next();
  assert.equal(error.id, null);
  assert.equal(error.error.code, -32600);
  engine.sendRaw('{"jsonrpc":"2.0","id":"ok","method":"invoke","params":{"function_id":"math::add","data":{"a":1,"b":2}}}\r\n');
  assert.equal((await engine.response('ok')).result, 3);
});

test('batches in, one array out', async () => {
  const engine = basic();
  await engine.handshake();
  engine.send([
    rpc('invoke', { function_id: 'math::add', data: { a: 1, b: 2 } }, 'b1'),
    rpc('invoke', { function_id: 'math::add', data: { a: 0, b: 0 } }), // notification
    rpc('invoke', { function_id: 'math::add_async', data: { a: 3, b: 4 } }, 'b2'),
    rpc('no_such_method', {}, 'b3'),
    42,
  ]);
  const responses = await engine.next();
  assert.ok(Array.isArray(responses));
  assert.equal(responses.length, 4);
  const byId = new Map(responses.map((r) => [r.id, r]));
  assert.equal(byId.get('b1').result, 3);
  assert.equal(byId.get('b2').result, 7);
  assert.equal(byId.get('b3').error.code, -32601);
  assert.equal(byId.get(null).error.code, -32600);

  engine.send([]);
  const error = await engine.next();
  assert.equal(error.id, null);
  assert.equal(error.error.code, -32600);

  engine.send([rpc('invoke', { function_id: 'math::add', data: { a: 0, b: 0 } })]);
  engine.invoke('after', 'math::add', { a: 1, b: 1 }); // a batch of notifications gets no answer
  assert.equal((await engine.response('after')).result, 2);
});

test('calls from a handler carry its trace context; replies may come in a batch', async () => {
  const engine = memoryEngine();
  const { worker } = engine;
  worker.registerFunction('chain', async (data) => {
    const doubled = await worker.trigger('math::double', { n: data.n }, { timeoutMs: 1000 });
    worker.triggerVoid('audit::record', { n: data.n });
    return doubled + 1;
  });
  worker.registerFunction('chain::explicit', async () => worker.trigger('x', 1, { traceparent: 'mine', baggage: 'b=1' }));
  worker.registerFunction('chain::fails', () => worker.trigger('math::missing', {}));
  worker.registerFunction('echo', (data) => data);
  worker.run();
  await engine.handshake();

  engine.invoke('n1', 'chain', { n: 20 }, { traceparent: '00-trace-span-01', baggage: 'user=7' });
  const call = await engine.expect('trigger');
  assert.deepEqual(call.params, {
    function_id: 'math::double', payload: { n: 20 }, timeout_ms: 1000, traceparent: '00-trace-span-01', baggage: 'user=7',
  });
  engine.invoke('n2', 'echo', 'still serving'); // while that handler waits, others are served
  assert.equal((await engine.response('n2')).result, 'still serving');
  engine.send([{ jsonrpc: '2.0', id: call.id, result: 40 }]);
  const fired = await engine.expect('trigger', { request: false });
  assert.deepEqual(fired.params,
    { function_id: 'audit::record', payload: { n: 20 }, traceparent: '00-trace-span-01', baggage: 'user=7' });
  assert.equal((await engine.response('n1')).result, 41);

  engine.invoke('n3', 'chain::explicit', null, { traceparent: 'theirs' });
  const explicit = await engine.expect('trigger');
  assert.deepEqual(explicit.params, { function_id: 'x', payload: 1, traceparent: 'mine', baggage: 'b=1' });
  engine.reply(explicit, 'done');
  assert.equal((await engine.response('n3')).result, 'done');

  engine.invoke('n4', 'chain::fails', {});
  const failing = await engine.expect('trigger');
  assert.deepEqual(failing.params, { function_id: 'math::missing', payload: {} }); // no context to pass on
  engine.send({ jsonrpc: '2.0', id: failing.id, error: { code: -32000, message: 'math::missing not found',
    data: { code: 'function_not_found', stacktrace: 'far away' } } });
  const error = (await engine.response('n4')).error;
  assert.deepEqual(error, { code: -32000, message: 'math::missing not found',
    data: { code: 'function_not_found', stacktrace: 'far away' } });
});

test('trigger outside handlers, its errors, and argument checks', async () => {
  const engine = memoryEngine();
  const { worker } = engine;
  worker.run();
  await engine.handshake();
  const pending = worker.trigger('math::add', { a: 1 });
  const call = await engine.expect('trigger');
  assert.deepEqual(call.params, { function_id: 'math::add', payload: { a: 1 } });
  engine.send({ jsonrpc: '2.0', id: call.id, error: { code: -32601, message: 'no' } });
  await assert.rejects(pending, (err) => err instanceof InvocationError && err.code === 'method_not_found'
    && err.message === 'no');
  assert.throws(() => worker.trigger('f', null, { timeoutMs: -1 }), TypeError);
  assert.throws(() => worker.trigger('', null), TypeError);
  await assert.rejects(worker.trigger('f', 10n), TypeError); // not JSON: refused locally, nothing sent
  assert.equal(engine.inbox.items.length, 0);
  const tooBig = memoryEngine({ maxFrameBytes: 100 });
  await assert.rejects(tooBig.worker.trigger('f', 'y'.repeat(200)), (err) => err.code === 'frame_too_large');
});

test('enqueue, publish and the state and stream helpers put the built-ins on the wire', async () => {
  const engine = memoryEngine();
  const { worker } = engine;
  const state = new State(worker);
  const streams = new Streams(worker);
  worker.run();
  await engine.handshake();

  async function roundTrip(promise, expectedParams, result) {
    const call = await engine.expect('trigger');
    assert.deepEqual(call.params, expectedParams);
    engine.reply(call, result);
    return promise;
  }

  assert.equal(await roundTrip(worker.enqueue('emails', 'email::send', { to: 'a' }),
    { function_id: 'email::send', payload: { to: 'a' }, action: { type: 'enqueue', queue: 'emails' } },
    { messageReceiptId: 'r-1' }), 'r-1');
  assert.equal(await roundTrip(worker.publish('orders', { id: 1 }),
    { function_id: 'publish', payload: { topic: 'orders', data: { id: 1 } } }, null), undefined);

  const pairs = [
    [state.get('s', 'k'), 'state::get', { scope: 's', key: 'k' }],
    [state.set('s', 'k', { v: 1 }), 'state::set', { scope: 's', key: 'k', value: { v: 1 } }],
    [state.delete('s', 'k'), 'state::delete', { scope: 's', key: 'k' }],
    [state.update('s', 'k', [ops.increment('n'), ops.set('ok', true)]), 'state::update',
      { scope: 's', key: 'k', ops: [{ type: 'increment', path: 'n', by: 1 }, { type: 'set', path: 'ok', value: true }] }],
    [state.list('s'), 'state::list', { scope: 's' }],
    [state.listGroups(), 'state::list_groups', {}],
    [streams.get('st', 'g', 'i'), 'stream::get', { stream_name: 'st', group_id: 'g', item_id: 'i' }],
    [streams.set('st', 'g', 'i', 5), 'stream::set', { stream_name: 'st', group_id: 'g', item_id: 'i', data: 5 }],
    [streams.delete('st', 'g', 'i'), 'stream::delete', { stream_name: 'st', group_id: 'g', item_id: 'i' }],
    [streams.list('st', 'g'), 'stream::list', { stream_name: 'st', group_id: 'g' }],
    [streams.listGroups('st'), 'stream::list_groups', { stream_name: 'st' }],
    [streams.send('st', 'g', 'typing', { who: 'a' }), 'stream::send',
      { stream_name: 'st', group_id: 'g', type: 'typing', data: { who: 'a' } }],
    [streams.send('st', 'g', 'typing', null, 'i'), 'stream::send',
      { stream_name: 'st', group_id: 'g', type: 'typing', data: null, id: 'i' }],
    [streams.update('st', 'g', 'i', [ops.merge({ a: 1 }), ops.append(3, 'xs'), ops.remove('old'), ops.decrement('n', 2)]),
      'stream::update', { stream_name: 'st', group_id: 'g', item_id: 'i', ops: [
        { type: 'merge', value: { a: 1 } }, { type: 'append', path: 'xs', value: 3 },
        { type: 'remove', path: 'old' }, { type: 'decrement', path: 'n', by: 2 }] }],
  ];
  for (const [promise, functionId, payload] of pairs) {
    assert.deepEqual(await roundTrip(promise, { function_id: functionId, payload }, { got: functionId }),
      { got: functionId });
  }
});

test('http registers a function and its route; triggers and their ids', async () => {
  const engine = memoryEngine();
  const { worker } = engine;
  const routed = worker.http('post', '/add', (req) => ({ status_code: 200, body: { sum: req.body.a + req.body.b } }));
  const named = worker.http('GET', '/users/:id', (req) => ({ body: req.path_params.id }), { functionId: 'users::get' });
  const cron = worker.registerTrigger('cron', 'users::get', { expression: '* * * * *' }, { id: 't-9', metadata: { m: 1 } });
  worker.run();
  const regs = await engine.handshake();
  assert.deepEqual(regs.map((r) => [r.method, r.params]), [
    ['register_function', { id: 'http::POST /add' }],
    ['register_trigger', { type: 'http', function_id: 'http::POST /add', config: { api_path: '/add', http_method: 'POST' } }],
    ['register_function', { id: 'users::get' }],
    ['register_trigger', { type: 'http', function_id: 'users::get', config: { api_path: '/users/:id', http_method: 'GET' } }],
    ['register_trigger', { id: 't-9', type: 'cron', function_id: 'users::get', config: { expression: '* * * * *' }, metadata: { m: 1 } }],
  ]);
  assert.equal(await routed, 'trg-1');
  assert.equal(await named, 'trg-1');
  assert.equal(await cron, 't-9');
  engine.invoke('h1', 'http::POST /add', { body: { a: 1, b: 2 }, path_params: {}, query_params: {}, headers: {}, method: 'POST' });
  assert.deepEqual((await engine.response('h1')).result, { status_code: 200, body: { sum: 3 } });

  const gone = worker.unregisterTrigger('t-9');
  engine.reply(await engine.expect('unregister_trigger'));
  await gone;
  const unregistered = worker.unregisterFunction('users::get');
  const request = await engine.expect('unregister_function');
  assert.deepEqual(request.params, { id: 'users::get' });
  engine.reply(request);
  await unregistered;
  engine.invoke('h2', 'users::get', {});
  assert.equal((await engine.response('h2')).error.data.code, 'function_not_found');
});

test('a refused registration rejects and leaves nothing behind', async () => {
  const engine = memoryEngine();
  const { worker } = engine;
  const refused = worker.registerFunction('dup::fn', () => 1);
  const request = await engine.expect('register_function');
  engine.replyError(request, 'function_already_registered', 'dup::fn exists');
  await assert.rejects(refused, (err) => err instanceof InvocationError
    && err.code === 'function_already_registered' && err.message === 'dup::fn exists');
  const badTrigger = worker.registerTrigger('cron', 'dup::fn', { expression: 'bad' });
  engine.replyError(await engine.expect('register_trigger'), 'invalid_params', 'bad cron expression');
  await assert.rejects(badTrigger, (err) => err.code === 'invalid_params');
  worker.run();
  await engine.expect('ready', { request: false });
  engine.invoke('i1', 'dup::fn', {});
  assert.equal((await engine.response('i1')).error.data.code, 'function_not_found');
  assert.throws(() => worker.registerFunction('x', 'not a function'), TypeError);
  assert.throws(() => worker.registerFunction('x', async function* gen() {}), /generator/);
});

test('custom trigger types get register_trigger and unregister_trigger', async () => {
  const engine = memoryEngine();
  const { worker } = engine;
  const seen = [];
  worker.registerTriggerType('queue::topic', {
    description: 'topics',
    onRegister: (trigger) => {
      if (trigger.config.reject) throw new InvocationError('invalid_params', 'rejected by the trigger type');
      seen.push(['register', trigger]);
      return 'ignored';
    },
    onUnregister: async (trigger) => { seen.push(['unregister', trigger]); },
  });
  worker.registerTriggerType('bare');
  worker.run();
  const regs = await engine.handshake();
  assert.deepEqual(regs.map((r) => r.params), [{ id: 'queue::topic', description: 'topics' }, { id: 'bare' }]);
  const trigger = { id: 't1', type: 'queue::topic', function_id: 'f::g', config: { topic: 'orders' } };
  engine.send(rpc('register_trigger', trigger, 'r1'));
  assert.deepEqual(await engine.response('r1'), { jsonrpc: '2.0', id: 'r1', result: null });
  engine.send(rpc('register_trigger', { ...trigger, id: 't2', config: { reject: true } }, 'r2'));
  assert.equal((await engine.response('r2')).error.data.code, 'invalid_params');
  engine.send(rpc('unregister_trigger', { id: 't1', type: 'queue::topic' }, 'r3'));
  assert.equal((await engine.response('r3')).result, null);
  engine.send(rpc('register_trigger', { ...trigger, type: 'bare' }, 'r4'));
  assert.equal((await engine.response('r4')).result, null);
  engine.send(rpc('register_trigger', { ...trigger, type: 'other' }, 'r5'));
  assert.equal((await engine.response('r5')).error.data.code, 'trigger_type_not_found');
  assert.deepEqual(seen, [['register', trigger], ['unregister', { id: 't1', type: 'queue::topic' }]]);

  const gone = worker.unregisterTriggerType('bare');
  engine.reply(await engine.expect('unregister_trigger_type'));
  await gone;
  engine.send(rpc('register_trigger', { ...trigger, type: 'bare' }, 'r6'));
  assert.equal((await engine.response('r6')).error.data.code, 'trigger_type_not_found');
});

test('log lines: levels, data, the invocation they belong to, unsendable data', async () => {
  const engine = memoryEngine({ maxFrameBytes: 2000 });
  const { worker } = engine;
  worker.logger.warning('careful', { x: 1 });
  worker.log('debug', 'dbg');
  worker.registerFunction('logs', (data) => {
    worker.logger.info('inside', data);
    worker.logger.error('huge', 'z'.repeat(5000));
    return null;
  });
  worker.run();
  assert.deepEqual((await engine.expect('log', { request: false })).params, { level: 'warn', message: 'careful', data: { x: 1 } });
  assert.deepEqual((await engine.expect('log', { request: false })).params, { level: 'debug', message: 'dbg' });
  await engine.handshake();
  engine.invoke('l1', 'logs', { y: 2 }, { traceparent: '00-t-s-01' });
  assert.deepEqual((await engine.expect('log', { request: false })).params,
    { level: 'info', message: 'inside', data: { y: 2 }, function_id: 'logs', traceparent: '00-t-s-01' });
  const dropped = (await engine.expect('log', { request: false })).params;
  assert.equal(dropped.level, 'error');
  assert.match(dropped.message, /^huge \(log data dropped: .*III_MAX_FRAME_BYTES/);
  assert.equal((await engine.response('l1')).result, null);
  assert.throws(() => worker.log('loud', 'x'), RangeError);
});

test('stdin EOF ends the worker; replies to unknown ids and null-id errors are harmless', async () => {
  const engine = basic();
  await engine.handshake();
  engine.send({ jsonrpc: '2.0', id: 999, result: 1 });
  engine.send({ jsonrpc: '2.0', id: null, error: { code: -32700, message: 'bad line' } });
  assert.match(engine.warnings.join(''), /the engine reported a protocol error: .*bad line/);
  engine.eof();
  assert.equal(engine.exitCode, 0);
});
