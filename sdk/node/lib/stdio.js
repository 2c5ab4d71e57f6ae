'use strict';
/**
 * The stdio transport: owns the process's stdin and stdout for the protocol.
 *
 * Node cannot dup2(), so fd 1 stays the protocol pipe. What it can do is keep the
 * real `process.stdout.write` for itself and point `process.stdout.write` (used by
 * console.log/info/debug/dir/table, `stream.pipe(process.stdout)` and worker
 * threads' output) at stderr, the worker's log. Direct writes to fd 1
 * (`fs.writeSync(1, …)`) and children spawned with `stdio: "inherit"` still reach
 * the protocol stream; the docs say how to avoid both.
 */

const { LineReader } = require('./frames');

let taken = null;

/**
 * Take over stdout (once per process); returns `output(text)`, which writes protocol
 * frames to the real stdout, `flush(callback)`, which runs `callback` once everything
 * written so far has left the process, and `onBroken(callback)`, for when the engine
 * closes our stdout (EPIPE).
 */
function takeOverStdout() {
  if (taken !== null) return taken;
  const stdout = process.stdout;
  const stderr = process.stderr;
  const realWrite = stdout.write.bind(stdout);
  let broken = false;
  const brokenListeners = [];
  stdout.on('error', () => { // EPIPE: stdin EOF (and exit) follows
    if (broken) return;
    broken = true;
    for (const listener of brokenListeners) listener();
  });
  Object.defineProperty(stdout, 'write', {
    configurable: true,
    writable: true,
    value: function write(chunk, encoding, callback) {
      return stderr.write(chunk, encoding, callback);
    },
  });
  taken = {
    output(text) {
      if (!broken) realWrite(text);
    },
    flush(callback) {
      if (broken) {
        callback();
        return;
      }
      try {
        realWrite('', () => callback());
      } catch {
        callback();
      }
    },
    onBroken(listener) {
      brokenListeners.push(listener);
    },
  };
  return taken;
}

/**
 * Read stdin as NDJSON with a size cap: `onLine(bytes)` per line, `onOversized(size)`
 * for skipped ones, `onEof()` once, when the engine closes stdin (or reading fails).
 */
function readStdin(maxFrameBytes, onLine, onOversized, onEof) {
  const reader = new LineReader(maxFrameBytes, onLine, onOversized);
  const stdin = process.stdin;
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    reader.end();
    onEof();
  };
  stdin.on('data', (chunk) => reader.push(typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk));
  stdin.on('end', end);
  stdin.on('close', end);
  stdin.on('error', (err) => {
    process.stderr.write(`iii-stdio: reading stdin failed: ${err && err.message}\n`);
    end();
  });
  stdin.resume();
}

module.exports = { takeOverStdout, readStdin };
