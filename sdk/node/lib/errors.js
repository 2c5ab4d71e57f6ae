'use strict';
/**
 * Errors on the wire and the one error class users see.
 *
 * Every error is a JSON-RPC error object `{code, message, data}`: `code` is the
 * JSON-RPC integer, the iii error code (the string callers branch on) is in
 * `data.code`, and an optional stack trace in `data.stacktrace`.
 *
 *   InvocationError   a failed call: thrown by handlers to choose the code the caller
 *                     sees; raised by trigger()/registrations when the engine answers
 *                     with an error (code "timeout", "function_not_found", ...).
 */

const path = require('node:path');

const PARSE_ERROR = -32700;
const INVALID_REQUEST = -32600;
const METHOD_NOT_FOUND = -32601;
const INVALID_PARAMS = -32602;
const INTERNAL_ERROR = -32603;
const APPLICATION_ERROR = -32000; // any iii error; the specific one is in data.code

// iii string code for the JSON-RPC protocol errors, for error objects without data.code
const PROTOCOL_CODES = {
  [PARSE_ERROR]: 'parse_error',
  [INVALID_REQUEST]: 'invalid_request',
  [METHOD_NOT_FOUND]: 'method_not_found',
  [INVALID_PARAMS]: 'invalid_params',
  [INTERNAL_ERROR]: 'internal_error',
};

class InvocationError extends Error {
  /**
   * @param {string} code iii error code, e.g. "out_of_stock"
   * @param {string} message one human-readable line
   * @param {string} [stacktrace] the callee's stack trace, when it came from elsewhere
   */
  constructor(code, message, stacktrace) {
    super(message);
    this.name = 'InvocationError';
    this.code = String(code);
    this.stacktrace = stacktrace === undefined || stacktrace === null ? undefined : String(stacktrace);
  }

  /** Build from a JSON-RPC error object received from the engine. */
  static fromErrorObject(error) {
    if (error === null || typeof error !== 'object' || Array.isArray(error)) {
      return new InvocationError('internal_error', `malformed error object: ${JSON.stringify(error)}`);
    }
    const data = error.data !== null && typeof error.data === 'object' ? error.data : {};
    const code = data.code || PROTOCOL_CODES[error.code] || 'invocation_failed';
    const message = error.message === undefined ? '' : String(error.message);
    return new InvocationError(code, message, data.stacktrace);
  }
}

function isInvocationError(err) {
  return err instanceof InvocationError
    || (err instanceof Error && err.name === 'InvocationError' && typeof err.code === 'string');
}

/** A JSON-RPC error object with the iii code (and stack trace) in `data`. */
function errorObject(rpcCode, message, code, stacktrace) {
  const data = { code };
  if (stacktrace) data.stacktrace = stacktrace;
  return { code: rpcCode, message, data };
}

const LIB_DIR = __dirname + path.sep;

/** Drop the SDK's own frames (and the AsyncLocalStorage one it runs handlers in) from a stack trace. */
function cleanStack(stack) {
  return String(stack)
    .split('\n')
    .filter((line) => {
      const frame = line.trimStart();
      return !(frame.startsWith('at ') && (frame.includes(LIB_DIR) || frame.includes('(node:async_hooks:')));
    })
    .join('\n');
}

/** Turn whatever a handler threw into the error object sent back to the caller. */
function errorFromException(err) {
  if (isInvocationError(err)) {
    return errorObject(APPLICATION_ERROR, err.message, err.code, err.stacktrace);
  }
  if (err instanceof Error) {
    const name = err.name || (err.constructor && err.constructor.name) || 'Error';
    const stack = typeof err.stack === 'string' ? cleanStack(err.stack) : undefined;
    const code = name === 'AbortError' ? 'invocation_stopped' : 'invocation_failed';
    return errorObject(APPLICATION_ERROR, `${name}: ${err.message}`, code, stack);
  }
  // `throw "text"` or `throw {…}`: no stack to show, say what was thrown
  let text;
  try {
    text = typeof err === 'string' ? err : JSON.stringify(err);
  } catch {
    text = undefined;
  }
  return errorObject(APPLICATION_ERROR, `Error: ${text === undefined ? String(err) : text}`, 'invocation_failed');
}

module.exports = {
  PARSE_ERROR,
  INVALID_REQUEST,
  METHOD_NOT_FOUND,
  INVALID_PARAMS,
  INTERNAL_ERROR,
  APPLICATION_ERROR,
  InvocationError,
  isInvocationError,
  errorObject,
  errorFromException,
  cleanStack,
};
