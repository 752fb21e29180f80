// A2A envelopes as docs/a2a.md defines them: the message id, the HMAC-SHA256 signature, and
// building a reply. Received envelopes are parsed with `parseExact`, so that their bytes (and so
// their id and signature) are recomputed exactly as the sender made them.

import { createHmac, timingSafeEqual } from "node:crypto";

import { canonicalJson, parseExact, sha256Hex } from "./canonical.js";

export const A2A_VERSION = "1.0";

/** Keys by id, and the one to sign with: `{ current: "k1", secrets: { k1: Buffer } }`. */
export function hmacKeys(spec) {
  // "kid=secret[,kid=secret...]", the first current: the form of the server's CMO_A2A_KEYS.
  const secrets = {};
  let current = null;
  for (const item of spec.split(",")) {
    const [kid, ...rest] = item.split("=");
    secrets[kid] = Buffer.from(rest.join("="), "utf8");
    current ??= kid;
  }
  return { current, secrets };
}

/** The message id: SHA-256 of the canonical envelope without `message_id` and `signature`. */
export function messageId(envelope) {
  const { message_id: _id, signature: _signature, ...meta } = envelope.meta;
  return sha256Hex(Buffer.from(canonicalJson({ meta, payload: envelope.payload }), "utf8"));
}

function mac(envelope, secret) {
  const { signature: _signature, ...meta } = envelope.meta;
  return createHmac("sha256", secret)
    .update(canonicalJson({ meta, payload: envelope.payload }), "utf8")
    .digest("base64url");
}

/** The envelope with its message id set and signed with the current key. */
export function sign(envelope, keys) {
  const { message_id: _id, signature: _signature, ...meta } = envelope.meta;
  const withId = { meta: { ...meta, message_id: messageId({ meta, payload: envelope.payload }) }, payload: envelope.payload };
  const value = mac(withId, keys.secrets[keys.current]);
  return { meta: { ...withId.meta, signature: { alg: "HMAC-SHA256", kid: keys.current, value } }, payload: envelope.payload };
}

/**
 * Parse and check a received envelope's text: its id, its signature. Returns `{ envelope }`, or
 * `{ reason, detail }` with the spec's rejection reason.
 */
export function verify(text, keys) {
  let envelope;
  try {
    envelope = parseExact(text);
  } catch (err) {
    return { reason: "invalid_envelope", detail: String(err.message) };
  }
  const meta = envelope?.meta;
  if (!meta || typeof meta !== "object" || meta.a2a_version !== A2A_VERSION) {
    return { reason: "invalid_envelope", detail: "$.meta: not an A2A 1.0 envelope" };
  }
  if (meta.message_id !== messageId(envelope)) {
    return { reason: "invalid_envelope", detail: "$.meta.message_id: is not the envelope's content hash" };
  }
  const signature = meta.signature;
  if (!signature) return { reason: "missing_signature", detail: "the envelope is not signed" };
  const secret = keys.secrets[signature.kid];
  if (signature.alg !== "HMAC-SHA256" || !secret) return { reason: "unknown_key", detail: `no key ${signature.kid}` };
  const expected = Buffer.from(mac(envelope, secret));
  const given = Buffer.from(String(signature.value));
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
    return { reason: "bad_signature", detail: "the signature does not match" };
  }
  return { envelope };
}

/** `ts` as the spec writes it: RFC 3339, UTC, milliseconds. */
export function now() {
  return new Date().toISOString();
}

/** A signed reply to `request` (answers go to its `reply_to`, naming it in `correlation_id`). */
export function reply(request, { type, payload, sender }, keys) {
  return sign(
    {
      meta: {
        a2a_version: A2A_VERSION,
        trace_id: request.meta.trace_id,
        ts: now(),
        from: sender,
        to: [request.meta.from],
        tenant: request.meta.tenant,
        project: request.meta.project,
        type,
        correlation_id: request.meta.message_id,
      },
      payload,
    },
    keys,
  );
}
