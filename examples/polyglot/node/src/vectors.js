// Check this implementation against the spec's test vectors:  node src/vectors.js [FILE]
// (docs/a2a-test-vectors.json by default). Prints `ok <n> cases`, or what differs, exiting 1.

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";

import { messageId, sign, verify } from "./a2a.js";
import { canonicalJson, parseExact } from "./canonical.js";

const file = process.argv[2] ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../../docs/a2a-test-vectors.json");
const vectors = parseExact(readFileSync(file, "utf8"));
const keys = { current: vectors.hmac_key.kid, secrets: { [vectors.hmac_key.kid]: Buffer.from(vectors.hmac_key.secret_utf8, "utf8") } };
const wrong = [];
const expect = (name, what, got, want) => {
  if (got !== want) wrong.push(`${name}: ${what}\n  got  ${got}\n  want ${want}`);
};
for (const c of vectors.cases) {
  const envelope = c.envelope_without_id;
  expect(c.name, "id input", canonicalJson(envelope), c.id_input);
  expect(c.name, "message id", messageId(envelope), c.message_id);
  const signed = sign(envelope, keys);
  const { signature: _signature, ...unsigned } = signed.meta;
  expect(c.name, "signed input", canonicalJson({ meta: unsigned, payload: signed.payload }), c.signed_input);
  expect(c.name, "signature", canonicalJson(signed.meta.signature), canonicalJson(c.signature));
  expect(c.name, "wire", canonicalJson(signed), c.wire);
  const checked = verify(c.wire, keys);
  expect(c.name, "verification of the wire text", checked.reason ?? "accepted", "accepted");
  const value = c.signature.value;
  const tampered = verify(c.wire.replace(value, `${value.slice(0, -1)}${value.endsWith("A") ? "B" : "A"}`), keys);
  expect(c.name, "verification of a tampered signature", tampered.reason, "bad_signature");
}
if (wrong.length) {
  console.error(wrong.join("\n"));
  process.exit(1);
}
console.log(`ok ${vectors.cases.length} cases`);
