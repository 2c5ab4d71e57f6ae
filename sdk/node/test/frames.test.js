'use strict';
// NDJSON line splitting with a size cap, with no process or protocol around it.

const assert = require('node:assert/strict');
const test = require('node:test');

const { LineReader, decodeUtf8 } = require('../lib/frames.js');

function reader(max) {
  const out = [];
  const r = new LineReader(max, (line) => out.push(['line', line.toString('utf8')]), (size) => out.push(['big', size]));
  return { r, out };
}

test('lines across chunk boundaries, several per chunk, a last line without newline', () => {
  const { r, out } = reader(100);
  r.push(Buffer.from('ab'));
  r.push(Buffer.from('c\nde\n\nf'));
  r.push(Buffer.from('g\n'));
  r.push(Buffer.from('tail'));
  r.end();
  assert.deepEqual(out, [['line', 'abc'], ['line', 'de'], ['line', ''], ['line', 'fg'], ['line', 'tail']]);
});

test('a line over the limit is skipped up to its newline and reported with its size', () => {
  const { r, out } = reader(5);
  r.push(Buffer.from('12345\n')); // exactly the limit: kept
  r.push(Buffer.from('1234'));
  r.push(Buffer.from('56789'));
  r.push(Buffer.from('0\nok\n'));
  r.push(Buffer.from('toolong'));
  r.end();
  assert.deepEqual(out, [['line', '12345'], ['big', 10], ['line', 'ok'], ['big', 7]]);
});

test('multi-byte characters split between chunks survive', () => {
  const { r, out } = reader(100);
  const bytes = Buffer.from('{"s":"héllo ✓"}\n');
  r.push(bytes.subarray(0, 8));
  r.push(bytes.subarray(8));
  assert.deepEqual(out, [['line', '{"s":"héllo ✓"}']]);
  assert.throws(() => decodeUtf8(Buffer.from([0xc3])));
  assert.equal(decodeUtf8(Buffer.from('✓')), '✓');
});
