// A specialist agent in Node.js, from docs/a2a.md and docs/wire.md alone:
//
//   node src/specialist.js --address HOST:PORT --redis URL --keys kid=secret [--instance ID]
//                          [--capability text.review] [--lease-seconds 6] [--tenant T --project P]
//
// It takes SpecialistInvocationRequests on a topic of its own, registers in the server's agent
// registry with that topic and its capability (so that `ctx.invoke_specialist(capability=...)`
// finds it), beats at a third of its lease, verifies each request's signature, answers a signed
// SpecialistResult on the request's `reply_to`, and deregisters on SIGTERM. It prints
// `ready <instance>` once it is registered and reading.

import os from "node:os";
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";

import { hmacKeys, reply, verify } from "./a2a.js";
import { call, connect, duration, RpcError } from "./rpc.js";
import { Streams } from "./streams.js";

const { values: options } = parseArgs({
  options: {
    address: { type: "string", default: process.env.CMO_ADDRESS || "127.0.0.1:7233" },
    redis: { type: "string", default: process.env.REDIS_URL || "redis://127.0.0.1:6379/0" },
    keys: { type: "string", default: process.env.CMO_A2A_KEYS || "" },
    instance: { type: "string", default: `reviewer-js-${randomBytes(4).toString("hex")}` },
    capability: { type: "string", default: "text.review" },
    "lease-seconds": { type: "string", default: "6" },
    tenant: { type: "string", default: process.env.CMO_TENANT || "default" },
    project: { type: "string", default: process.env.CMO_PROJECT || "default" },
    prefix: { type: "string", default: "qa" },
  },
});

const NAME = "reviewer-js";
const VERSION = "1.0.0";
const GROUP = `specialist-${options.instance}`;
const namespace = { tenant: options.tenant, project: options.project };
const topic = `${options.prefix}.${options.tenant}.${options.project}.specialists.${options.instance}.invoke`;
const me = { type: "specialist", id: NAME, version: VERSION };
const keys = hmacKeys(options.keys);
const leaseMs = Number(options["lease-seconds"]) * 1000;

const rpc = connect(options.address);
const streams = new Streams(options.redis);
let leaseId = "";
let busy = 0;
let stopping = false;

async function register() {
  const response = await call(rpc.registry, "RegisterAgent", {
    namespace,
    agent_id: options.instance,
    kind: "specialist",
    name: NAME,
    version: VERSION,
    capabilities: [options.capability],
    topics: [{ topic, role: "TOPIC_ROLE_SUBSCRIBE" }],
    metadata: { sdk: "node", host: os.hostname() },
    lease: duration(leaseMs),
    status: "AGENT_STATUS_HEALTHY",
  }, { timeoutMs: 10_000 });
  leaseId = response.lease_id;
}

async function beat() {
  while (!stopping) {
    await sleep(leaseMs / 3);
    if (stopping) return;
    try {
      await call(rpc.registry, "Heartbeat", { namespace, agent_id: options.instance, lease_id: leaseId, load: busy / 16 },
        { timeoutMs: 5_000, retryForMs: 0 });
    } catch (err) {
      if (err instanceof RpcError && err.code === "FAILED_PRECONDITION") await register(); // the lease lapsed
      else console.error(`heartbeat failed: ${err.message}`);
    }
  }
}

/** What this specialist proposes: a review of the text it is given. */
function review(inputs) {
  const words = String(inputs.text ?? "").split(/\s+/).filter(Boolean);
  return { by: options.instance, language: "node", words: words.length, verdict: words.length > 3 ? "long" : "short" };
}

async function handle(entry) {
  const checked = verify(entry.data, keys);
  if (!checked.envelope) return streams.deadLetter(topic, GROUP, entry, checked.reason, checked.detail);
  const request = checked.envelope;
  const meta = request.meta;
  if (meta.type !== "SpecialistInvocationRequest") {
    return streams.deadLetter(topic, GROUP, entry, "unsupported_type", `this agent handles no ${meta.type}`);
  }
  if (meta.tenant !== options.tenant || meta.project !== options.project || !meta.reply_to) {
    return streams.deadLetter(topic, GROUP, entry, "cross_tenant", "not of this agent's namespace");
  }
  busy++;
  try {
    const answer = reply(request, {
      type: "SpecialistResult",
      sender: me,
      payload: { status: "succeeded", confidence: 0.75, cost: { usd: 0 }, errors: [], proposal: review(request.payload.inputs) },
    }, keys);
    await streams.publish(meta.reply_to, answer.meta.message_id, JSON.stringify(answer));
    console.log(`answered ${meta.message_id.slice(0, 16)} on ${meta.reply_to}`);
    await streams.ack(topic, GROUP, entry.entryId);
  } finally {
    busy--;
  }
}

async function serve() {
  while (!stopping) {
    for (const entry of await streams.read(topic, GROUP, options.instance)) await handle(entry);
  }
}

process.on("SIGTERM", () => {
  stopping = true;
});
process.on("SIGINT", () => {
  stopping = true;
});

try {
  await streams.join(topic, GROUP); // reading before anyone can find it: no request is missed
  await register();
  console.log(`ready ${options.instance}`);
  await Promise.all([beat(), serve()]);
} finally {
  if (leaseId) {
    await call(rpc.registry, "Deregister", { namespace, agent_id: options.instance, lease_id: leaseId, reason: "shut down" },
      { timeoutMs: 5_000, retryForMs: 0 }).catch(() => {});
  }
  streams.close();
  rpc.close();
}
