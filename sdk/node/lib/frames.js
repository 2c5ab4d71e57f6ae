'use strict';
/**
 * NDJSON framing: split the incoming byte stream into lines without ever buffering more
 * than one frame, and parse a line into a JSON value. Knows nothing of JSON-RPC.
 */

const DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024;
const NEWLINE = 0x0a;

let utf8;
try {
  utf8 = new TextDecoder('utf-8', { fatal: true });
} catch {
  utf8 = null; // a Node built without ICU: fall back to a round-trip check
}

/**
 * Cuts chunks into lines. A line longer than `maxBytes` (without its newline) is not
 * kept: the rest of it is skipped up to the next newline and `onOversized(size)` is told.
 */
class LineReader {
  /**
   * @param {number} maxBytes
   * @param {(line: Buffer) => void} onLine
   * @param {(size: number) => void} onOversized
   */
  constructor(maxBytes, onLine, onOversized) {
    this.maxBytes = maxBytes;
    this._onLine = onLine;
    this._onOversized = onOversized;
    this._parts = [];
    this._size = 0;
    this._skipping = false;
  }

  /** Feed one chunk read from the stream. */
  push(chunk) {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(NEWLINE, start);
      if (nl === -1) {
        if (start < chunk.length) this._keep(chunk.subarray(start));
        return;
      }
      this._keep(chunk.subarray(start, nl));
      this._endLine();
      start = nl + 1;
    }
  }

  /** The stream ended: a last line without a newline still counts. */
  end() {
    if (this._size > 0 || this._skipping) this._endLine();
  }

  _keep(part) {
    if (part.length === 0) return;
    this._size += part.length;
    if (this._skipping) return;
    if (this._size > this.maxBytes) {
      this._skipping = true;
      this._parts = [];
      return;
    }
    this._parts.push(part);
  }

  _endLine() {
    const size = this._size;
    const skipping = this._skipping;
    const parts = this._parts;
    this._parts = [];
    this._size = 0;
    this._skipping = false;
    if (skipping) {
      this._onOversized(size);
    } else {
      this._onLine(parts.length === 1 ? parts[0] : Buffer.concat(parts, size));
    }
  }
}

/** The text of a line; throws on invalid UTF-8. */
function decodeUtf8(bytes) {
  if (utf8 !== null) return utf8.decode(bytes);
  const text = bytes.toString('utf8');
  if (text.includes('\ufffd') && !Buffer.from(text, 'utf8').equals(bytes)) {
    throw new TypeError('The encoded data was not valid for encoding utf-8');
  }
  return text;
}

/** True when a line holds nothing but whitespace (skipped, like blank lines). */
function isBlank(text) {
  return text.trim() === '';
}

module.exports = { DEFAULT_MAX_FRAME_BYTES, LineReader, decodeUtf8, isBlank };
