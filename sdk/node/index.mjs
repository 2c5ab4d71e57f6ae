// ES module entry: the same objects as the CommonJS entry (one copy of the SDK per process).
import sdk from './lib/index.js';

export const {
  Worker, Logger, InvocationError, Invocation, currentInvocation, State, Streams, ops, version,
} = sdk;
export default sdk;
