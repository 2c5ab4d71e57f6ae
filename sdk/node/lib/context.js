'use strict';
/**
 * The invocation a handler is running for. AsyncLocalStorage follows it through
 * `await`, timers and callbacks, so `currentInvocation()` and the trace context of
 * `trigger()` calls are right even when many invocations interleave on one thread.
 */

const { AsyncLocalStorage } = require('node:async_hooks');

/** What the engine told us about the call being handled. */
class Invocation {
  constructor(invocationId, functionId, traceparent, baggage, metadata) {
    this.invocationId = invocationId;
    this.functionId = functionId;
    this.traceparent = typeof traceparent === 'string' ? traceparent : null;
    this.baggage = typeof baggage === 'string' ? baggage : null;
    this.metadata = metadata === undefined ? null : metadata;
  }
}

const storage = new AsyncLocalStorage();

/** The invocation being handled by the calling code, or null outside a handler. */
function currentInvocation() {
  return storage.getStore() || null;
}

/** Run `fn` with `invocation` as the current one (null: outside any invocation). */
function runWithInvocation(invocation, fn) {
  return storage.run(invocation, fn);
}

module.exports = { Invocation, currentInvocation, runWithInvocation };
