'use strict';
/**
 * iii-stdio: write iii workers in Node.js.
 *
 * The engine starts the worker as a child process and speaks JSON-RPC 2.0 with it,
 * one message per line, over its stdin/stdout (see docs/protocol-stdio.md):
 *
 *   const { Worker } = require('iii-stdio');     // or: import { Worker } from 'iii-stdio'
 *   const worker = new Worker();
 *   worker.registerFunction('math::add', (data) => data.a + data.b);
 *   worker.run();
 *
 * Node's standard library only; Node 18 or later.
 */

const { currentInvocation, Invocation } = require('./context');
const { InvocationError } = require('./errors');
const { State, Streams, ops } = require('./helpers');
const { takeOverStdout } = require('./stdio');
const { Logger, PROTOCOL, Worker } = require('./worker');

// Started by the engine: stdout is the protocol from now on, so console.log() in modules
// loaded after this one (and before `new Worker()`) already goes to stderr.
if (process.env.III_PROTOCOL === PROTOCOL) takeOverStdout();

const version = '0.1.0';

module.exports = { Worker, Logger, InvocationError, Invocation, currentInvocation, State, Streams, ops, version };
