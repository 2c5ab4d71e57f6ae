// Types of the ES module entry (index.mjs): the named exports of index.d.ts, plus the
// default export, which is the whole SDK object (as `require('iii-stdio')` returns it).
export * from './index.js';
import * as sdk from './index.js';
export default sdk;
