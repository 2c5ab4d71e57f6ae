'use strict';
/**
 * The protocol's edge: JSON-RPC 2.0 messages in and out, one per line.
 *
 * Frames and writes outgoing messages, parses incoming lines, and matches the
 * engine's replies to our pending requests. It never touches a file descriptor:
 * a transport gives it `output(text)` and feeds it lines (see stdio.js), so tests
 * drive it with no process at all. What an incoming request *means* is the
 * dispatcher's business (`onMessage`).
 */

const { DEFAULT_MAX_FRAME_BYTES, decodeUtf8, isBlank } = require('./frames');
const { InvocationError, PARSE_ERROR, errorObject } = require('./errors');

/** A response to one of our requests (as opposed to a request or notification). */
function isReply(message) {
  return message !== null && typeof message === 'object' && !Array.isArray(message)
    && !('method' in message) && ('result' in message || 'error' in message);
}

/** The result of a reply, or its error thrown as InvocationError. */
function resultOf(reply) {
  if ('error' in reply) throw InvocationError.fromErrorObject(reply.error);
  return reply.result === undefined ? null : reply.result;
}

class Channel {
  /**
   * @param {object} options
   * @param {(text: string) => void} options.output writes whole frames (with their newline)
   * @param {number} [options.maxFrameBytes]
   * @param {(text: string) => void} [options.warn] where protocol trouble is reported (stderr)
   */
  constructor({ output, maxFrameBytes = DEFAULT_MAX_FRAME_BYTES, warn }) {
    this.maxFrameBytes = maxFrameBytes;
    this._output = output;
    this._warn = warn || ((text) => process.stderr.write(text));
    this._nextId = 1;
    this._pending = new Map();
    this._broken = false;
    this.onMessage = () => {};
  }

  // -- output ---------------------------------------------------------------------------

  /**
   * One frame, without the newline. Throws TypeError for values JSON cannot hold
   * (BigInt, cycles) and InvocationError("frame_too_large") for frames the engine
   * would refuse.
   */
  encode(message) {
    const line = JSON.stringify(message);
    if (typeof line !== 'string') throw new TypeError('message is not JSON serializable');
    // a UTF-8 byte is at most 3 per UTF-16 unit: skip the exact count for small frames
    if (line.length * 3 > this.maxFrameBytes) {
      const size = Buffer.byteLength(line, 'utf8');
      if (size > this.maxFrameBytes) {
        throw new InvocationError(
          'frame_too_large',
          `message of ${size} bytes exceeds III_MAX_FRAME_BYTES=${this.maxFrameBytes}`,
        );
      }
    }
    return line;
  }

  /** Write one encoded frame. Frames never interleave: each is one write of a whole line. */
  write(line) {
    if (this._broken) return;
    this._output(line + '\n');
  }

  send(message) {
    this.write(this.encode(message));
  }

  notify(method, params) {
    this.send({ jsonrpc: '2.0', method, params });
  }

  /** The transport could not write any more (the engine closed our stdout). */
  markBroken() {
    this._broken = true;
  }

  get broken() {
    return this._broken;
  }

  /** Send a request; `onReply(response)` runs when the engine answers. Returns the id. */
  request(method, params, onReply) {
    if (this._broken) throw new InvocationError('channel_closed', 'the engine closed the protocol stream');
    const id = this._nextId++;
    this._pending.set(id, onReply);
    try {
      this.send({ jsonrpc: '2.0', id, method, params });
    } catch (err) {
      this._pending.delete(id);
      throw err;
    }
    return id;
  }

  /** Forget a pending request (its late reply is then dropped). */
  cancel(id) {
    this._pending.delete(id);
  }

  /**
   * Send a request and resolve with its result (reject with InvocationError).
   * `timeoutMs` null waits for ever; `onSettled(error?)` runs once, however it ends
   * (without observing the returned promise, so an unawaited failure stays unhandled).
   */
  call(method, params, { timeoutMs = null, onSettled = null, what = null } = {}) {
    return new Promise((resolve, reject) => {
      let timer = null;
      let id = null;
      let done = false;
      const settle = (err, value) => {
        if (done) return;
        done = true;
        if (timer !== null) clearTimeout(timer);
        if (onSettled !== null) onSettled(err);
        if (err === undefined) resolve(value);
        else reject(err);
      };
      try {
        id = this.request(method, params, (reply) => {
          let value;
          try {
            value = resultOf(reply);
          } catch (err) {
            settle(err);
            return;
          }
          settle(undefined, value);
        });
      } catch (err) {
        settle(err);
        return;
      }
      if (timeoutMs !== null && timeoutMs !== undefined) {
        timer = setTimeout(() => {
          this.cancel(id);
          settle(new InvocationError('timeout', `no reply to ${what || method} within ${timeoutMs} ms`));
        }, timeoutMs);
      }
    });
  }

  // -- input ----------------------------------------------------------------------------

  /** Hand a reply from the engine to whoever is waiting for it. */
  resolve(reply) {
    const id = reply.id;
    if (typeof id === 'string' || typeof id === 'number') {
      const onReply = this._pending.get(id);
      if (onReply !== undefined) {
        this._pending.delete(id);
        onReply(reply);
      }
    } else if ('error' in reply) { // the engine could not read one of our lines: say so in the log
      this._warn(`iii-stdio: the engine reported a protocol error: ${JSON.stringify(reply.error)}\n`);
    }
  }

  /** One line read from the engine (without its newline). */
  receiveLine(bytes) {
    let message;
    try {
      const text = typeof bytes === 'string' ? bytes : decodeUtf8(bytes);
      if (isBlank(text)) return;
      message = JSON.parse(text);
    } catch (err) {
      const error = errorObject(PARSE_ERROR, `Parse error: ${err && err.message}`, 'parse_error');
      this.send({ jsonrpc: '2.0', id: null, error });
      return;
    }
    try {
      if (isReply(message)) this.resolve(message);
      else this.onMessage(message);
    } catch (err) { // a bug in dispatch must not stop the reading
      this._warn(`iii-stdio: failed to dispatch a message: ${err && err.stack ? err.stack : err}\n`);
    }
  }

  /** The transport skipped an incoming line over the frame limit. */
  receiveOversized(size) {
    const message = `dropped an incoming frame of ${size} bytes (III_MAX_FRAME_BYTES=${this.maxFrameBytes})`;
    this._warn(`iii-stdio: ${message}\n`);
    this.notify('log', { level: 'error', message, data: { code: 'frame_too_large' } });
  }
}

module.exports = { Channel, isReply, resultOf };
