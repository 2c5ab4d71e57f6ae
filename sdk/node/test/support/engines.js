'use strict';
/**
 * Two stand-ins for the engine in the SDK's tests (this file holds no tests):
 *
 * - memoryEngine(): a Worker on an in-memory transport, in this process. The test
 *   plays the engine by feeding lines and reading the frames the worker wrote.
 * - FakeEngine: a real worker process over real pipes, for what only a process
 *   shows (stdout takeover, exit at EOF, signals).
 *
 * Every wait is bounded; nothing sleeps.
 */

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { Worker } = require('../../lib/index.js');

const SDK_DIR = path.resolve(__dirname, '..', '..');
const TIMEOUT_MS = 5000;

/** Frames arrive here; `next()` waits (bounded) for the next one. */
class Inbox {
  constructor(describe) {
    this.items = [];
    this._waiters = [];
    this._describe = describe;
  }

  put(item) {
    const waiter = this._waiters.shift();
    if (waiter) waiter(item);
    else this.items.push(item);
  }

  next(timeoutMs = TIMEOUT_MS) {
    if (this.items.length > 0) return Promise.resolve(this.items.shift());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._waiters.splice(this._waiters.indexOf(done), 1);
        reject(new Error(`no message from the worker within ${timeoutMs} ms${this._describe()}`));
      }, timeoutMs);
      const done = (item) => {
        clearTimeout(timer);
        resolve(item);
      };
      this._waiters.push(done);
    });
  }
}

/** Helpers shared by both engines: `send`, `next`, `expect`, `response`, `handshake`. */
class EngineSide {
  send(message) {
    this.sendRaw(JSON.stringify(message) + '\n');
  }

  invoke(id, functionId, data = null, extra = {}) {
    this.send({ jsonrpc: '2.0', id, method: 'invoke', params: { function_id: functionId, data, ...extra } });
  }

  reply(request, result = null) {
    this.send({ jsonrpc: '2.0', id: request.id, result });
  }

  replyError(request, code, message) {
    this.send({ jsonrpc: '2.0', id: request.id, error: { code: -32000, message, data: { code } } });
  }

  next(timeoutMs) {
    return this.inbox.next(timeoutMs);
  }

  /** The next message, which must be `method` (a request unless `request: false`). */
  async expect(method, { request = true } = {}) {
    const message = await this.next();
    if (message === null || message.method !== method || ('id' in message) !== request
        || message.jsonrpc !== '2.0') {
      throw new Error(`expected ${request ? 'request' : 'notification'} ${method}, got ${JSON.stringify(message)}`);
    }
    return message;
  }

  async response(id) {
    const message = await this.next();
    if (message === null || Array.isArray(message) || message.id !== id || message.jsonrpc !== '2.0') {
      throw new Error(`expected the response to ${JSON.stringify(id)}, got ${JSON.stringify(message)}`);
    }
    return message;
  }

  /** Accept every registration until `ready`; return the registration requests. */
  async handshake() {
    const registrations = [];
    for (;;) {
      const message = await this.next();
      if (message === null) throw new Error(`worker closed stdout before ready${this.describe()}`);
      if (message.method === 'ready') {
        if ('id' in message) throw new Error('ready must be a notification');
        return registrations;
      }
      if (!('id' in message)) throw new Error(`unexpected notification before ready: ${JSON.stringify(message)}`);
      registrations.push(message);
      const result = message.method === 'register_trigger' ? { id: message.params.id || 'trg-1' } : null;
      this.reply(message, result);
    }
  }

  describe() {
    return '';
  }
}

/** A Worker in this process whose transport is the test. */
class MemoryEngine extends EngineSide {
  constructor(options = {}) {
    super();
    this.inbox = new Inbox(() => this.describe());
    this.warnings = [];
    this.exitCode = null;
    this.raw = [];
    const transport = {
      output: (text) => {
        this.raw.push(text);
        for (const line of text.split('\n')) if (line) this.inbox.put(JSON.parse(line));
      },
      start: (onLine, onOversized, onEof) => {
        this._feed = { onLine, onOversized, onEof };
      },
      exit: (code) => { this.exitCode = code; },
      warn: (text) => { this.warnings.push(text); },
    };
    this.worker = new Worker({ ...options, transport });
  }

  sendRaw(text) {
    for (const line of String(text).split('\n')) {
      if (line) this._feed.onLine(Buffer.from(line, 'utf8'));
    }
  }

  sendBytes(bytes) {
    this._feed.onLine(bytes);
  }

  oversized(size) {
    this._feed.onOversized(size);
  }

  eof() {
    this._feed.onEof();
  }

  describe() {
    return this.warnings.length ? `; warnings:\n${this.warnings.join('')}` : '';
  }
}

function memoryEngine(options) {
  return new MemoryEngine(options);
}

/** Runs a worker script as a child process and speaks the engine's side over its pipes. */
class FakeEngine extends EngineSide {
  /**
   * @param {string} source the worker's code (an ES module unless `file` ends in .cjs)
   * @param {object} [options] env: extra environment; file: the script's name
   */
  constructor(source, { env = {}, file = 'worker.mjs', stdio } = {}) {
    super();
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iii-stdio-test-'));
    linkSdk(this.dir);
    this.script = path.join(this.dir, file);
    fs.writeFileSync(this.script, source);
    this.inbox = new Inbox(() => this.describe());
    this.stderrText = '';
    this.rawStdout = [];
    this.proc = spawn(process.execPath, [this.script], {
      cwd: this.dir,
      env: workerEnv(env),
      stdio: stdio || ['pipe', 'pipe', 'pipe'],
    });
    this.exited = new Promise((resolve) => this.proc.on('exit', (code, signal) => resolve({ code, signal })));
    if (this.proc.stdout) {
      let partial = '';
      this.proc.stdout.setEncoding('utf8');
      this.proc.stdout.on('data', (text) => {
        partial += text;
        let nl;
        while ((nl = partial.indexOf('\n')) !== -1) {
          const line = partial.slice(0, nl);
          partial = partial.slice(nl + 1);
          this.rawStdout.push(line);
          let message;
          try {
            message = JSON.parse(line);
          } catch {
            message = { notJson: line };
          }
          this.inbox.put(message);
        }
      });
      this.proc.stdout.on('end', () => this.inbox.put(null));
    }
    if (this.proc.stderr) {
      this.proc.stderr.setEncoding('utf8');
      this.proc.stderr.on('data', (text) => { this.stderrText += text; });
      this.stderrClosed = new Promise((resolve) => this.proc.stderr.on('end', resolve));
    }
  }

  sendRaw(data) {
    this.proc.stdin.write(data);
  }

  closeStdin() {
    this.proc.stdin.end();
  }

  /** Resolves with the exit `{code, signal}`; rejects after `timeoutMs`. */
  wait(timeoutMs = TIMEOUT_MS) {
    let timer;
    const timeout = new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`worker still running after ${timeoutMs} ms${this.describe()}`)),
        timeoutMs);
    });
    return Promise.race([this.exited, timeout]).finally(() => clearTimeout(timer));
  }

  async stderr() {
    if (this.stderrClosed) await this.stderrClosed;
    return this.stderrText;
  }

  kill() {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  describe() {
    return `; stderr:\n${this.stderrText}`;
  }
}

/** `node_modules/iii-stdio` -> this SDK, as `npm install <path>` would make it. */
function linkSdk(dir) {
  fs.mkdirSync(path.join(dir, 'node_modules'), { recursive: true });
  fs.symlinkSync(SDK_DIR, path.join(dir, 'node_modules', 'iii-stdio'), 'dir');
}

function workerEnv(extra) {
  return {
    ...process.env,
    III_PROTOCOL: 'stdio-jsonrpc',
    III_WORKER_NAME: 'test-worker',
    III_ENGINE_PID: String(process.pid),
    III_ENGINE_URL: 'stdio://',
    ...extra,
  };
}

function rpc(method, params, id) {
  const message = { jsonrpc: '2.0', method, params };
  if (id !== undefined) message.id = id;
  return message;
}

module.exports = { memoryEngine, FakeEngine, rpc, linkSdk, workerEnv, SDK_DIR, TIMEOUT_MS };
