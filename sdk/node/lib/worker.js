'use strict';
/** The Worker: registrations, calls into the engine, and the engine's calls into us. */

const { Channel } = require('./channel');
const { currentInvocation } = require('./context');
const { Dispatcher } = require('./dispatch');
const { InvocationError } = require('./errors');
const { DEFAULT_MAX_FRAME_BYTES } = require('./frames');
const { readStdin, takeOverStdout } = require('./stdio');

const PROTOCOL = 'stdio-jsonrpc';
const CALL_TIMEOUT_MS = 30000; // to wait for the engine to answer a registration
const TRIGGER_GRACE_MS = 2000; // extra local wait past timeoutMs; the engine is the one that times out
const EXIT_FLUSH_MS = 2000; // at most this long to flush stdout before exiting
const LEVELS = { debug: 'debug', info: 'info', warn: 'warn', warning: 'warn', error: 'error' };

let instance = null;

class Worker {
  /**
   * Takes over stdin/stdout; one per process. Create it, register functions and
   * triggers, then call `run()`.
   *
   * @param {object} [options]
   * @param {number} [options.maxFrameBytes] defaults to $III_MAX_FRAME_BYTES or 64 MiB
   * @param {object} [options.transport] for tests: `{output(text), start(onLine, onOversized, onEof), exit(code)}`
   *   instead of the process's stdin/stdout
   */
  constructor(options = {}) {
    const transport = options.transport || null;
    if (transport === null) {
      checkStartedByEngine();
      if (instance !== null) throw new Error('only one iii-stdio Worker can exist per process');
      instance = this;
    }
    this.name = process.env.III_WORKER_NAME || '';
    this.logger = new Logger(this);
    this._functions = new Map();
    this._triggerTypes = new Map();
    this._registering = new Set(); // settled-promises of registrations run() waits for
    this._running = false;
    const maxFrameBytes = options.maxFrameBytes || envInt('III_MAX_FRAME_BYTES', DEFAULT_MAX_FRAME_BYTES);
    let start;
    if (transport === null) {
      const stdout = takeOverStdout();
      stdout.onBroken(() => this._channel.markBroken());
      this._exit = (code) => exitAfterFlush(stdout, code);
      this._channel = new Channel({ output: stdout.output, maxFrameBytes });
      start = (onLine, onOversized, onEof) => readStdin(maxFrameBytes, onLine, onOversized, onEof);
      exitOnSigterm(this._exit);
    } else {
      this._exit = (code) => transport.exit(code);
      this._channel = new Channel({ output: transport.output, maxFrameBytes, warn: transport.warn });
      start = transport.start;
    }
    const dispatcher = new Dispatcher(this._channel, this._functions, this._triggerTypes, transport && transport.warn);
    this._channel.onMessage = (message) => dispatcher.onMessage(message);
    start(
      (line) => this._channel.receiveLine(line),
      (size) => this._channel.receiveOversized(size),
      () => this._exit(0), // stdin is our lifeline: when the engine closes it, the worker ends
    );
  }

  // -- functions ------------------------------------------------------------------------

  /**
   * Offer `handler(data, invocation)` (sync or async) as function `id`. Resolves once
   * the engine has accepted it; rejects with InvocationError if it refuses.
   */
  registerFunction(id, handler, options = {}) {
    checkId(id, 'function id');
    checkHandler(handler);
    const params = dropUndefined({
      id,
      description: options.description,
      request_format: options.requestFormat,
      response_format: options.responseFormat,
      metadata: options.metadata,
    });
    const previous = this._functions.get(id);
    this._functions.set(id, handler); // before the request: the engine may invoke right after it accepts
    return this._register('register_function', params, () => restore(this._functions, id, handler, previous));
  }

  async unregisterFunction(id) {
    await this._channel.call('unregister_function', { id }, { timeoutMs: CALL_TIMEOUT_MS });
    this._functions.delete(id);
  }

  // -- triggers -------------------------------------------------------------------------

  /** Bind `functionId` to a trigger of `type`; resolves with the trigger id. */
  registerTrigger(type, functionId, config, options = {}) {
    checkId(type, 'trigger type');
    checkId(functionId, 'function id');
    const params = dropUndefined({ id: options.id, type, function_id: functionId, config, metadata: options.metadata });
    return this._register('register_trigger', params).then((result) =>
      (result !== null && typeof result === 'object' && typeof result.id === 'string' ? result.id : options.id || ''));
  }

  async unregisterTrigger(id) {
    await this._channel.call('unregister_trigger', { id }, { timeoutMs: CALL_TIMEOUT_MS });
  }

  /**
   * An HTTP route: function `options.functionId` (default `"http::<METHOD> <path>"`)
   * plus an `http` trigger. `handler(request, invocation)` gets
   * `{path_params, query_params, headers, method, path, body}` and returns
   * `{status_code, headers?, body}`. Resolves with the trigger id.
   */
  http(method, path, handler, options = {}) {
    const verb = String(method).toUpperCase();
    checkId(path, 'path');
    const functionId = options.functionId || `http::${verb} ${path}`;
    const registered = this.registerFunction(functionId, handler, {
      description: options.description,
      metadata: options.metadata,
    });
    const trigger = this.registerTrigger('http', functionId, { api_path: path, http_method: verb });
    return Promise.all([registered, trigger]).then((results) => results[1]);
  }

  /**
   * Provide a trigger type: the engine then sends us each trigger of that type.
   * `onRegister(trigger)` / `onUnregister(trigger)` get `{id, type, function_id, config, metadata?}`;
   * throwing (or rejecting) refuses it.
   */
  registerTriggerType(id, options = {}) {
    checkId(id, 'trigger type');
    const { onRegister, onUnregister } = options;
    if (onRegister !== undefined && onRegister !== null) checkHandler(onRegister);
    if (onUnregister !== undefined && onUnregister !== null) checkHandler(onUnregister);
    const entry = { onRegister, onUnregister };
    const previous = this._triggerTypes.get(id);
    this._triggerTypes.set(id, entry);
    const params = dropUndefined({ id, description: options.description });
    return this._register('register_trigger_type', params, () => restore(this._triggerTypes, id, entry, previous));
  }

  async unregisterTriggerType(id) {
    await this._channel.call('unregister_trigger_type', { id }, { timeoutMs: CALL_TIMEOUT_MS });
    this._triggerTypes.delete(id);
  }

  /** Registrations made before run() are awaited by it, so `ready` follows them all. */
  _register(method, params, onRefused) {
    let done;
    const settled = new Promise((resolve) => { done = resolve; });
    this._registering.add(settled);
    return this._channel.call(method, params, {
      timeoutMs: CALL_TIMEOUT_MS,
      what: method,
      onSettled: (err) => {
        if (err !== undefined && onRefused) onRefused();
        this._registering.delete(settled);
        done();
      },
    });
  }

  // -- calling other functions ----------------------------------------------------------

  /**
   * Call a function through the engine; resolves with its result, rejects with
   * InvocationError carrying the callee's code. Inside a handler the call carries the
   * invocation's traceparent and baggage unless given.
   */
  trigger(functionId, payload = null, options = {}) {
    const { timeoutMs } = options;
    if (timeoutMs !== undefined && timeoutMs !== null && !(typeof timeoutMs === 'number' && timeoutMs > 0)) {
      throw new TypeError(`timeoutMs must be a positive number, got ${timeoutMs}`);
    }
    const params = triggerParams(functionId, payload, timeoutMs, options);
    return this._channel.call('trigger', params, {
      timeoutMs: timeoutMs === undefined || timeoutMs === null ? null : timeoutMs + TRIGGER_GRACE_MS,
      what: `trigger of ${JSON.stringify(functionId)}`,
    });
  }

  /** Fire and forget: the engine runs the function, nobody waits for the result. */
  triggerVoid(functionId, payload = null, options = {}) {
    this._channel.notify('trigger', triggerParams(functionId, payload, null, options));
  }

  /**
   * Queue a call of `functionId` on the named queue (retried per the queue's policy);
   * resolves with the message receipt id once the engine has stored it durably.
   */
  async enqueue(queue, functionId, payload = null) {
    const params = triggerParams(functionId, payload, null, {});
    params.action = { type: 'enqueue', queue };
    const result = await this._channel.call('trigger', params, { what: `enqueue of ${JSON.stringify(functionId)}` });
    if (result === null || typeof result !== 'object' || result.messageReceiptId === undefined) {
      throw new InvocationError('internal_error', `enqueue answered ${JSON.stringify(result)}, expected {messageReceiptId}`);
    }
    return String(result.messageReceiptId);
  }

  /** Publish `data` to every `subscribe` trigger of `topic` (the `publish` built-in). */
  async publish(topic, data = null) {
    await this.trigger('publish', { topic, data });
  }

  // -- logging and lifecycle ------------------------------------------------------------

  /** Send a structured log line to the engine (level: debug, info, warn, error). */
  log(level, message, data) {
    const wireLevel = Object.prototype.hasOwnProperty.call(LEVELS, level) ? LEVELS[level] : undefined;
    if (wireLevel === undefined) {
      throw new RangeError(`unknown log level ${JSON.stringify(level)}; use debug, info, warn or error`);
    }
    const params = { level: wireLevel, message: String(message) };
    if (data !== undefined && data !== null) params.data = data;
    const invocation = currentInvocation();
    if (invocation !== null) { // the engine shows which function and trace a line belongs to
      params.function_id = invocation.functionId;
      if (invocation.traceparent) params.traceparent = invocation.traceparent;
    }
    try {
      this._channel.notify('log', params);
    } catch (err) { // unserializable or oversized data
      const text = `${String(message).slice(0, 4096)} (log data dropped: ${err && err.message})`;
      this._channel.notify('log', { level: wireLevel, message: text });
    }
  }

  /**
   * Tell the engine we are ready, once every registration made so far is answered.
   * Resolves after `ready` is sent; the process then serves until stdin closes and
   * exits with code 0.
   */
  async run() {
    if (this._running) return;
    this._running = true;
    while (this._registering.size > 0) await Promise.all([...this._registering]);
    this._channel.notify('ready', {});
  }
}

/** `worker.logger.info("msg", {…})`: log lines that reach the engine structured. */
class Logger {
  constructor(worker) {
    this._worker = worker;
  }

  debug(message, data) { this._worker.log('debug', message, data); }

  info(message, data) { this._worker.log('info', message, data); }

  warn(message, data) { this._worker.log('warn', message, data); }

  warning(message, data) { this._worker.log('warn', message, data); }

  error(message, data) { this._worker.log('error', message, data); }
}

/** Inside a handler, calls inherit its trace context unless given explicitly. */
function triggerParams(functionId, payload, timeoutMs, options) {
  checkId(functionId, 'function id');
  const params = { function_id: functionId, payload: payload === undefined ? null : payload };
  if (timeoutMs !== undefined && timeoutMs !== null) params.timeout_ms = timeoutMs;
  let { traceparent, baggage } = options;
  const current = currentInvocation();
  if (current !== null) {
    traceparent = traceparent || current.traceparent;
    baggage = baggage || current.baggage;
  }
  if (traceparent) params.traceparent = traceparent;
  if (baggage) params.baggage = baggage;
  return params;
}

function checkStartedByEngine() {
  const protocol = process.env.III_PROTOCOL;
  if (protocol === undefined && process.stdin.isTTY) {
    process.stderr.write(
      'iii-stdio: this worker is meant to be started by `iii run`, which talks to it over '
      + 'stdin/stdout (JSON-RPC). To drive it by hand, set III_PROTOCOL=stdio-jsonrpc.\n',
    );
    process.exit(2);
  }
  if (protocol !== undefined && protocol !== PROTOCOL) {
    process.stderr.write(`iii-stdio: unsupported III_PROTOCOL=${JSON.stringify(protocol)}; this SDK speaks "${PROTOCOL}"\n`);
    process.exit(2);
  }
}

/** SIGTERM -> exit 0, unless the program listens for SIGTERM itself. */
function exitOnSigterm(exit) {
  const onSigterm = () => {
    if (process.listenerCount('SIGTERM') > 1) return; // the program handles it
    exit(0);
  };
  process.on('SIGTERM', onSigterm);
}

let exiting = false;

/** Exit once the frames already written have left the process (bounded). */
function exitAfterFlush(stdout, code) {
  if (exiting) return;
  exiting = true;
  const timer = setTimeout(() => process.exit(code), EXIT_FLUSH_MS);
  timer.unref();
  stdout.flush(() => process.exit(code));
}

function checkHandler(handler) {
  if (typeof handler !== 'function') throw new TypeError(`handler must be a function, got ${typeof handler}`);
  const kind = handler.constructor && handler.constructor.name;
  if (kind === 'AsyncGeneratorFunction' || kind === 'GeneratorFunction') {
    throw new TypeError('generator handlers are not supported; return a value instead');
  }
}

function checkId(value, what) {
  if (typeof value !== 'string' || value === '') {
    throw new TypeError(`${what} must be a non-empty string, got ${JSON.stringify(value)}`);
  }
}

/** Undo a local registration the engine refused (unless it was replaced meanwhile). */
function restore(registry, key, entry, previous) {
  if (registry.get(key) === entry) {
    if (previous === undefined) registry.delete(key);
    else registry.set(key, previous);
  }
}

function dropUndefined(params) {
  const out = {};
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null) out[key] = value;
  }
  return out;
}

function envInt(name, fallback) {
  const value = Number.parseInt(process.env[name] || '', 10);
  return Number.isFinite(value) && value > 0 ? value : fallback;
}

module.exports = { Worker, Logger, PROTOCOL };
