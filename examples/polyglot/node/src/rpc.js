// The gRPC side: the repository's .proto files loaded as they are, and calls with deadlines and
// the retries docs/wire.md ("Status codes") asks for.

import { fileURLToPath } from "node:url";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";

/** The proto/ folder at the root of the repository (CMO_PROTO_DIR overrides it). */
export const PROTO_DIR =
  process.env.CMO_PROTO_DIR || path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../../proto");

// keepCase: the wire's field names (task_token, not taskToken). longs as strings: int64 and
// uint64 (the run's seed, Duration.seconds) do not fit in a double. defaults: every field is
// present on a decoded message, an unset message field as null.
const LOAD_OPTIONS = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

const RETRYABLE = new Set([grpc.status.UNAVAILABLE, grpc.status.CANCELLED, grpc.status.DEADLINE_EXCEEDED]);

/** A gRPC status as an Error whose `code` is the status name ("FAILED_PRECONDITION"). */
export class RpcError extends Error {
  constructor(method, err) {
    const code = grpc.status[err.code] ?? String(err.code);
    super(`${method}: ${code}: ${err.details || err.message}`);
    this.name = "RpcError";
    this.code = code;
    this.details = err.details || "";
  }
}

/** Stubs of the services on one channel to `address` (host:port). */
export function connect(address) {
  const definition = protoLoader.loadSync(
    ["cmo/api/v1/worker_service.proto", "cmo/api/v1/run_service.proto", "cmo/api/v1/registry_service.proto"],
    { ...LOAD_OPTIONS, includeDirs: [PROTO_DIR] },
  );
  const api = grpc.loadPackageDefinition(definition).cmo.api.v1;
  const credentials = grpc.credentials.createInsecure();
  const workers = new api.WorkerService(address, credentials);
  const runs = new api.RunService(address, credentials, { channelOverride: workers.getChannel() });
  const registry = new api.RegistryService(address, credentials, { channelOverride: workers.getChannel() });
  return {
    workers,
    runs,
    registry,
    close: () => workers.close(),
  };
}

/**
 * Call a unary method; retry UNAVAILABLE (and a call that did not finish) with jittered back-off
 * for up to `retryForMs`. Every task call is safe to re-send (docs/wire.md), so callers retry
 * them with the same request; other codes are thrown as RpcError at once.
 *
 * `onCall` receives the call object of each try, so a caller can cancel a long poll.
 */
export async function call(stub, method, request, { timeoutMs, retryForMs = 30_000, onCall } = {}) {
  const giveUp = Date.now() + retryForMs;
  let delay = 50;
  for (;;) {
    try {
      return await unary(stub, method, request, timeoutMs, onCall);
    } catch (err) {
      if (!(err instanceof RpcError) || !RETRYABLE.has(grpc.status[err.code]) || Date.now() + delay > giveUp) {
        throw err;
      }
    }
    await sleep(delay * (0.5 + Math.random()));
    delay = Math.min(delay * 2, 2_000);
  }
}

/** A Duration message from milliseconds. */
export function duration(ms) {
  return { seconds: Math.floor(ms / 1000), nanos: Math.round((ms % 1000) * 1e6) };
}

/** Milliseconds of a decoded Duration ({seconds: "30", nanos: 0}). */
export function durationMs(msg) {
  return msg ? Number(msg.seconds) * 1000 + msg.nanos / 1e6 : 0;
}

/** A Date from a decoded Timestamp. */
export function timestampDate(msg) {
  return new Date(Number(msg.seconds) * 1000 + Math.floor(msg.nanos / 1e6));
}

/** A Timestamp message from a Date. */
export function timestamp(date) {
  const ms = date.getTime();
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
}

function unary(stub, method, request, timeoutMs, onCall) {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + timeoutMs);
    const pending = stub[method](request, { deadline }, (err, response) =>
      err ? reject(new RpcError(method, err)) : resolve(response),
    );
    onCall?.(pending);
  });
}
