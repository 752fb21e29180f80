// Canonical JSON and the state hash, as docs/wire.md ("Canonical JSON") defines them.
//
// The server re-encodes every payload it is sent; these bytes are the ones it would store, so
// hashing them gives the server's state hash. JSON.stringify alone is not enough: it sorts
// nothing, and writes small numbers (0.00001) differently from the canonical form (1e-05).

import { createHash } from "node:crypto";

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * A number as it was written in a JSON text: `5` and `5.0` are different canonical JSON (an
 * integer and a double), which a JavaScript number cannot tell apart. `parseExact` makes these.
 */
export class JsonNumber {
  constructor(raw) {
    this.raw = raw;
  }

  valueOf() {
    return Number(this.raw);
  }

  toJSON() {
    return Number(this.raw);
  }
}

/** The canonical JSON text of a JSON-shaped value (objects, arrays, strings, finite numbers, booleans, null). */
export function canonicalJson(value) {
  if (value === null) return "null";
  if (value instanceof JsonNumber) return exactNumber(value.raw);
  switch (typeof value) {
    case "boolean":
      return value ? "true" : "false";
    case "number":
      return canonicalNumber(value);
    case "string":
      return canonicalString(value);
    case "object":
      if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
      return `{${Object.keys(value)
        .sort(byCodePoint)
        .map((key) => `${canonicalString(key)}:${canonicalJson(value[key])}`)
        .join(",")}}`;
    default:
      throw new TypeError(`a ${typeof value} is not JSON`);
  }
}

/** The canonical JSON of a value as UTF-8 bytes: what goes into a `bytes` payload field. */
export function canonicalBytes(value) {
  return Buffer.from(canonicalJson(value), "utf8");
}

/** Lowercase hex SHA-256 of canonical bytes: the state hash. */
export function sha256Hex(bytes) {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Parse a JSON payload the server sent (canonical UTF-8); empty bytes are `null`. */
export function parseJson(bytes) {
  return bytes && bytes.length ? JSON.parse(Buffer.from(bytes).toString("utf8")) : null;
}

/**
 * Parse JSON text keeping each number as written (a JsonNumber), so that canonicalJson gives back
 * the bytes another language made: needed to recompute the message id and the signature of an
 * envelope received.
 */
export function parseExact(text) {
  let at = 0;
  const fail = (what) => {
    throw new SyntaxError(`${what} at offset ${at}`);
  };
  const space = () => {
    while (at < text.length && " \t\n\r".includes(text[at])) at++;
  };
  const value = () => {
    space();
    const c = text[at];
    if (c === "{") {
      at++;
      const object = {};
      space();
      if (text[at] === "}") return at++, object;
      for (;;) {
        space();
        if (text[at] !== '"') fail("expected a key");
        const key = string();
        space();
        if (text[at++] !== ":") fail("expected ':'");
        object[key] = value();
        space();
        if (text[at] === ",") at++;
        else if (text[at] === "}") return at++, object;
        else fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      at++;
      const array = [];
      space();
      if (text[at] === "]") return at++, array;
      for (;;) {
        array.push(value());
        space();
        if (text[at] === ",") at++;
        else if (text[at] === "]") return at++, array;
        else fail("expected ',' or ']'");
      }
    }
    if (c === '"') return string();
    for (const [word, meaning] of [["true", true], ["false", false], ["null", null]]) {
      if (text.startsWith(word, at)) return (at += word.length), meaning;
    }
    const number = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(at, at + 400));
    if (!number) fail("not JSON");
    at += number[0].length;
    return new JsonNumber(number[0]);
  };
  const string = () => {
    const end = /^"(?:[^"\\\u0000-\u001f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"/.exec(text.slice(at));
    if (!end) fail("a bad string");
    at += end[0].length;
    return JSON.parse(end[0]);
  };
  const parsed = value();
  space();
  if (at !== text.length) fail("text after the value");
  return parsed;
}

/** A number as the server writes what it parsed from `raw`: an integer's digits, or a double's shortest form. */
function exactNumber(raw) {
  if (/^-?\d+$/.test(raw)) return raw === "-0" ? "0" : raw;
  const x = Number(raw);
  if (!Number.isFinite(x)) throw new RangeError(`${raw} is not a finite number`);
  if (Object.is(x, -0)) return "-0.0";
  const magnitude = Math.abs(x);
  if (x !== 0 && (magnitude < 1e-4 || magnitude >= 1e16)) {
    const [mantissa, exponent] = x.toExponential().split("e");
    return `${mantissa}e${exponent[0]}${exponent.slice(1).padStart(2, "0")}`;
  }
  const text = String(x);
  return Number.isInteger(x) ? `${text}.0` : text;
}

function canonicalNumber(x) {
  if (!Number.isFinite(x)) throw new RangeError(`${x} is not JSON`);
  if (x === 0) return "0"; // -0 too: the server reads "0" as the integer 0
  // Integral values below 1e21 come out as digits, which the server keeps as an integer. Other
  // values are doubles: String(x) already has the server's shortest digits and notation,
  // except below 1e-4, where the server writes an exponent of at least two digits.
  if (Math.abs(x) < 1e-4 && !Number.isInteger(x)) {
    const [mantissa, exponent] = x.toExponential().split("e");
    return `${mantissa}e${exponent[0]}${exponent.slice(1).padStart(2, "0")}`;
  }
  return String(x);
}

function canonicalString(s) {
  // JSON.stringify escapes exactly what the canonical form escapes (", \ and U+0000-U+001F,
  // lowercase hex), but turns a lone surrogate into an escape the server refuses: say so here.
  if (LONE_SURROGATE.test(s)) throw new RangeError("a string with a lone surrogate is not canonical JSON");
  return JSON.stringify(s);
}

/** Order keys by Unicode code point, as the server does (JavaScript's default compares UTF-16 units). */
function byCodePoint(a, b) {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    const x = a.codePointAt(i);
    const y = b.codePointAt(i);
    if (x !== y) return x - y;
    if (x > 0xffff) i++; // both strings hold the same surrogate pair here
  }
  return a.length - b.length;
}
