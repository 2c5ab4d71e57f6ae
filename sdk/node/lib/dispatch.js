'use strict';
/**
 * Engine -> worker messages: find the handler, run it, answer.
 *
 * Handlers run as promises, so a slow one never stops the reading of stdin: the
 * replies to a handler's own `trigger()` calls keep arriving while it waits.
 */

const { isReply } = require('./channel');
const { Invocation, runWithInvocation } = require('./context');
const {
  APPLICATION_ERROR,
  INVALID_PARAMS,
  INVALID_REQUEST,
  METHOD_NOT_FOUND,
  errorFromException,
  errorObject,
  isInvocationError,
} = require('./errors');

class Dispatcher {
  /**
   * @param {import('./channel').Channel} channel
   * @param {Map<string, Function>} functions  id -> handler(data, invocation), shared with the Worker
   * @param {Map<string, {onRegister?: Function, onUnregister?: Function}>} triggerTypes
   */
  constructor(channel, functions, triggerTypes, warn) {
    this._channel = channel;
    this._functions = functions;
    this._triggerTypes = triggerTypes;
    this._warn = warn || ((text) => process.stderr.write(text));
    this._methods = {
      invoke: (id, params, finish) => this._onInvoke(id, params, finish),
      register_trigger: (id, params, finish) => this._onTriggerChange(params, finish, 'onRegister'),
      unregister_trigger: (id, params, finish) => this._onTriggerChange(params, finish, 'onUnregister'),
    };
  }

  /** Handle one parsed message that is not a reply: a single message or a batch. */
  onMessage(message) {
    const write = (line) => this._channel.write(line);
    if (!Array.isArray(message)) {
      this._handle(message, write);
    } else if (message.length === 0) {
      write(this._errorLine(null, INVALID_REQUEST, 'Invalid Request: empty batch', 'invalid_request'));
    } else {
      const batch = new Batch(write);
      for (const item of message) {
        if (this._handle(item, (line) => batch.add(line))) batch.expected += 1;
      }
      batch.seal();
    }
  }

  /** Dispatch one message; return true if `reply` will be called (exactly once). */
  _handle(message, reply) {
    if (message === null || typeof message !== 'object' || Array.isArray(message)) {
      reply(this._errorLine(null, INVALID_REQUEST, 'Invalid Request', 'invalid_request'));
      return true;
    }
    if (isReply(message)) { // a reply inside a batch
      this._channel.resolve(message);
      return false;
    }
    const hasId = 'id' in message && message.id !== undefined;
    const id = hasId ? message.id : null;
    if (!validId(id)) {
      reply(this._errorLine(null, INVALID_REQUEST, 'Invalid Request: bad id', 'invalid_request'));
      return true;
    }
    const name = message.method;
    if (message.jsonrpc !== '2.0' || typeof name !== 'string') {
      reply(this._errorLine(id, INVALID_REQUEST, 'Invalid Request', 'invalid_request'));
      return true;
    }
    const method = Object.prototype.hasOwnProperty.call(this._methods, name) ? this._methods[name] : undefined;
    if (method === undefined) {
      if (hasId) reply(this._errorLine(id, METHOD_NOT_FOUND, `Method not found: ${name}`, 'method_not_found'));
      return hasId;
    }
    const finish = (result, error) => {
      if (hasId) {
        reply(this._response(id, result, error));
      } else if (error) { // a notification failed: nobody to tell but the log
        this._warn(`iii-stdio: ${name} notification failed: ${error.message}\n`);
      }
    };
    method(id, message.params, finish);
    return hasId;
  }

  // -- methods --------------------------------------------------------------------------

  _onInvoke(id, params, finish) {
    if (!isObject(params) || typeof params.function_id !== 'string') {
      finish(undefined, errorObject(INVALID_PARAMS, 'invoke needs params.function_id', 'invalid_params'));
      return;
    }
    const functionId = params.function_id;
    const handler = this._functions.get(functionId);
    if (handler === undefined) {
      const message = `function ${JSON.stringify(functionId)} is not registered by this worker`;
      finish(undefined, errorObject(APPLICATION_ERROR, message, 'function_not_found'));
      return;
    }
    const invocation = new Invocation(id, functionId, params.traceparent, params.baggage, params.metadata);
    run(handler, params.data === undefined ? null : params.data, invocation, finish);
  }

  /** Call the provider's onRegister / onUnregister callback; answer null whatever it returns. */
  _onTriggerChange(params, finish, which) {
    if (!isObject(params) || typeof params.type !== 'string') {
      finish(undefined, errorObject(INVALID_PARAMS, 'params.type is required', 'invalid_params'));
      return;
    }
    const callbacks = this._triggerTypes.get(params.type);
    if (callbacks === undefined) {
      const message = `trigger type ${JSON.stringify(params.type)} is not registered by this worker`;
      finish(undefined, errorObject(APPLICATION_ERROR, message, 'trigger_type_not_found'));
      return;
    }
    const callback = callbacks[which];
    if (typeof callback !== 'function') {
      finish(null);
      return;
    }
    run(callback, params, null, (result, error) => finish(null, error));
  }

  // -- answers --------------------------------------------------------------------------

  /** Encode a response; a result that cannot be sent becomes an error response. */
  _response(id, result, error) {
    if (!error) {
      try {
        return this._channel.encode({ jsonrpc: '2.0', id, result: result === undefined ? null : result });
      } catch (err) {
        error = isInvocationError(err) // frame_too_large
          ? errorFromException(err)
          : errorObject(APPLICATION_ERROR, `result is not JSON serializable: ${err && err.message}`, 'invocation_failed');
      }
    }
    return this._channel.encode({ jsonrpc: '2.0', id, error });
  }

  _errorLine(id, rpcCode, message, code) {
    return this._channel.encode({ jsonrpc: '2.0', id, error: errorObject(rpcCode, message, code) });
  }
}

/** Run user code (sync or async) as the given invocation; `finish(result)` or `finish(undefined, error)`. */
function run(handler, arg, invocation, finish) {
  let promise;
  try {
    promise = Promise.resolve(runWithInvocation(invocation, () => handler(arg, invocation)));
  } catch (err) {
    finish(undefined, errorFromException(err));
    return;
  }
  promise.then(
    (result) => finish(result, undefined),
    (err) => finish(undefined, errorFromException(err)),
  );
}

/** Collects the responses to one incoming batch and sends them as one array. */
class Batch {
  constructor(write) {
    this._write = write;
    this._lines = [];
    this._sealed = false;
    this.expected = 0; // bumped while dispatching, before seal()
  }

  add(line) {
    this._lines.push(line);
    if (this._sealed && this._lines.length === this.expected) this._flush();
  }

  seal() {
    this._sealed = true;
    // a batch of only notifications gets no answer
    if (this._lines.length === this.expected && this._lines.length > 0) this._flush();
  }

  _flush() {
    this._write('[' + this._lines.join(',') + ']');
  }
}

function validId(value) {
  return value === null || typeof value === 'string' || (typeof value === 'number' && Number.isFinite(value));
}

function isObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

module.exports = { Dispatcher };
