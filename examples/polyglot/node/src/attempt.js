// One attempt of one task: run the node with its context, heartbeat, record activities, and end
// the attempt with exactly one of CompleteTask or FailTask (docs/wire.md, "The task lifecycle").

import { createHash } from "node:crypto";

import { canonicalBytes, parseJson, sha256Hex } from "./canonical.js";
import {
  ActivityError,
  ApplicationError,
  LeaseLostError,
  NondeterminismError,
  RunCancelledError,
  ShutdownError,
  failureOf,
} from "./errors.js";
import { call, duration, durationMs, timestamp, timestampDate } from "./rpc.js";

const CALL_TIMEOUT_MS = 30_000;
const COMPLETE_RETRY_MS = 120_000; // CompleteTask is safe to re-send: ride out a server restart
const END = "__end__";
const ACTIVITY_KIND = "call";

export class Attempt {
  /**
   * @param {object} worker the Worker running it: rpc stubs, worker id, log, eager queues
   * @param {object} task the Task as PollTask or CompleteTask returned it
   * @param {Function | undefined} node `async (state, ctx) => ({ state, next, output })`
   */
  constructor(worker, task, node) {
    this.worker = worker;
    this.task = task;
    this.node = node;
    this.where = { run: task.run_id, step: task.step_index, attempt: task.attempt, node: task.node_id };
    this.aborted = new AbortController();
    this.recorded = new Map(task.activities.map((a) => [a.seq, a]));
    this.unconfirmed = new Map(); // seq -> Activity not yet confirmed by RecordActivity
    this.sending = new Set();
    this.nextSeq = 0;
    this.cancelRequested = task.cancel_requested;
  }

  /** Run the attempt to its end; returns the run's next task when it came eagerly, else null. */
  async run() {
    const { log } = this.worker;
    if (!this.node) {
      await this.fail(new ApplicationError(`this worker has no node ${this.task.node_id}`, { nonRetryable: true }));
      return null;
    }
    if (this.task.cancel_requested) {
      // Nothing has started in this attempt: there is nothing to wind up.
      log("cancelled before start", this.where);
      await this.fail(new RunCancelledError(), { cancelled: true });
      return null;
    }
    const startedAt = new Date();
    const heartbeats = this.startHeartbeats();
    let result;
    try {
      result = await this.node(parseJson(this.task.state), this.context());
      checkResult(result);
    } catch (err) {
      return this.endAfterError(err);
    } finally {
      clearInterval(heartbeats);
    }
    return this.complete(result, startedAt);
  }

  /** Stop the node and hand the task back unrun (the worker is shutting down). */
  release() {
    this.aborted.abort(new ShutdownError());
  }

  // -- the node's context -------------------------------------------------------------------

  context() {
    const attempt = this;
    const random = seededRandom(`${this.task.seed}:${this.task.step_index}`);
    return {
      runId: this.task.run_id,
      stepIndex: this.task.step_index,
      attempt: this.task.attempt,
      nodeId: this.task.node_id,
      graphId: this.task.graph_id,
      graphVersion: this.task.graph_version,
      /** The step's logical time: the same on every attempt. Node code never reads the clock. */
      logicalTime: timestampDate(this.task.logical_time),
      /** A number in [0, 1) from the step's generator: the same sequence on every attempt. */
      random,
      /** Aborted when the run is being cancelled, the lease is lost or the worker stops. */
      signal: this.aborted.signal,
      get cancelRequested() {
        return attempt.cancelRequested;
      },
      /** Run `fn(info)` as the recorded activity `name` of this step, or replay its record. */
      activity: (name, args, fn) => this.activity(name, args, fn),
    };
  }

  async activity(name, args, fn) {
    const seq = this.nextSeq++; // numbered at the call, before anything is awaited
    const requestHash = sha256Hex(canonicalBytes(args ?? null));
    const recorded = this.recorded.get(seq);
    if (recorded) {
      if (recorded.kind !== ACTIVITY_KIND || recorded.name !== name || recorded.request_hash !== requestHash) {
        throw new NondeterminismError(
          seq,
          `${recorded.kind} ${recorded.name} (request ${recorded.request_hash.slice(0, 12)})`,
          `${ACTIVITY_KIND} ${name} (request ${requestHash.slice(0, 12)})`,
        );
      }
      this.worker.log("activity replayed", { ...this.where, seq, name });
      return outcome(recorded, name);
    }
    this.aborted.signal.throwIfAborted();
    await this.confirmRecords(); // earlier outcomes are durable before this side effect starts
    const record = { seq, kind: ACTIVITY_KIND, name, request_hash: requestHash };
    const started = performance.now();
    const info = { seq, idempotencyKey: idempotencyKey(this.task, seq), signal: this.aborted.signal };
    try {
      record.result = canonicalBytes((await fn(info)) ?? null);
    } catch (err) {
      this.aborted.signal.throwIfAborted(); // cut short by the attempt's end: not an outcome
      record.error = failureOf(err);
    }
    record.duration = duration(performance.now() - started);
    this.keep(record);
    return outcome(record, name);
  }

  /** Send a new record now, in the background; until confirmed it rides on the attempt's last call. */
  keep(record) {
    this.unconfirmed.set(record.seq, record);
    const sending = this.record(record)
      .then(() => this.unconfirmed.delete(record.seq))
      .catch((err) => this.worker.log("activity record not confirmed yet", { ...this.where, error: err.message }))
      .finally(() => this.sending.delete(sending));
    this.sending.add(sending);
  }

  async confirmRecords() {
    await Promise.all(this.sending);
    for (const record of [...this.unconfirmed.values()]) {
      await this.record(record);
      this.unconfirmed.delete(record.seq);
    }
  }

  async record(activity) {
    const request = { worker_id: this.worker.workerId, task_token: this.task.task_token, activity };
    try {
      // The reply is the stored record. It differs from this one only if the seq had a record
      // already, and those came with the task and were replayed above.
      return (await this.call("RecordActivity", request, COMPLETE_RETRY_MS)).activity;
    } catch (err) {
      if (err.code === "FAILED_PRECONDITION") this.loseLease();
      throw err;
    }
  }

  ridingRecords() {
    return [...this.unconfirmed.values()].sort((a, b) => a.seq - b.seq);
  }

  // -- heartbeats and cancellation ------------------------------------------------------------

  startHeartbeats() {
    const interval = Math.max(durationMs(this.task.lease_duration) / 3, 50);
    let inFlight = false;
    return setInterval(async () => {
      if (inFlight || this.aborted.signal.aborted) return;
      inFlight = true;
      try {
        const request = { worker_id: this.worker.workerId, task_token: this.task.task_token };
        const reply = await call(this.worker.rpc.workers, "HeartbeatTask", request, {
          timeoutMs: interval,
          retryForMs: 0, // the next tick is the retry
        });
        this.worker.log("heartbeat", { ...this.where, cancel_requested: reply.cancel_requested });
        if (reply.cancel_requested) this.requestCancel();
      } catch (err) {
        if (err.code === "FAILED_PRECONDITION") this.loseLease();
        else this.worker.log("heartbeat failed, trying again", { ...this.where, error: err.code });
      } finally {
        inFlight = false;
      }
    }, interval);
  }

  requestCancel() {
    if (this.cancelRequested) return;
    this.cancelRequested = true;
    this.worker.log("cancel requested", this.where);
    this.aborted.abort(new RunCancelledError());
  }

  loseLease() {
    if (!this.aborted.signal.aborted) this.aborted.abort(new LeaseLostError());
  }

  // -- the end of the attempt -----------------------------------------------------------------

  async endAfterError(err) {
    const why = this.aborted.signal.aborted ? this.aborted.signal.reason : err;
    if (why instanceof LeaseLostError) {
      this.worker.log("lease lost: dropping the attempt", this.where);
    } else if (why instanceof ShutdownError) {
      await this.fail(why, { release: true });
    } else if (why instanceof RunCancelledError || this.cancelRequested) {
      await this.fail(new RunCancelledError(), { cancelled: true });
    } else {
      await this.fail(err);
    }
    return null;
  }

  async complete(result, startedAt) {
    const request = {
      worker_id: this.worker.workerId,
      task_token: this.task.task_token,
      state: canonicalBytes(result.state),
      output: result.output === undefined ? Buffer.alloc(0) : canonicalBytes(result.output),
      next_key: result.next ?? END,
      started_at: timestamp(startedAt),
      eager_task_queues: this.worker.eagerQueues(),
      activities: this.ridingRecords(),
    };
    let reply;
    try {
      reply = await this.call("CompleteTask", request, COMPLETE_RETRY_MS);
    } catch (err) {
      if (err.code === "INVALID_ARGUMENT" || err.code === "RESOURCE_EXHAUSTED") {
        // The checkpoint itself is wrong: retrying cannot help, so the run fails visibly.
        const failure = new ApplicationError(err.details, { type: err.code, nonRetryable: true });
        await this.fail(failure, { riding: false }); // a riding record may be what was refused
      } else {
        this.worker.log("checkpoint refused: dropping the attempt", { ...this.where, error: err.message });
      }
      return null;
    }
    this.worker.log("completed", { ...this.where, next: request.next_key, run_status: reply.run_status });
    if (reply.next_task) {
      this.worker.log("next task came eagerly", { run: reply.next_task.run_id, step: reply.next_task.step_index });
    }
    return reply.next_task;
  }

  async fail(err, { release = false, cancelled = false, riding = true } = {}) {
    const failure = cancelled
      ? { message: "cancelled", type: "RunCancelledError", non_retryable: true }
      : failureOf(err);
    const request = {
      worker_id: this.worker.workerId,
      task_token: this.task.task_token,
      failure,
      release,
      cancelled,
      activities: riding ? this.ridingRecords() : [],
    };
    try {
      const reply = await this.call("FailTask", request, CALL_TIMEOUT_MS);
      const what = release ? "released" : cancelled ? "cancelled" : "failed";
      const outcome = { error: failure.type, will_retry: reply.will_retry, run_status: reply.run_status };
      this.worker.log(what, { ...this.where, ...outcome });
    } catch (rpcErr) {
      // FAILED_PRECONDITION: the attempt had ended already (a lapsed lease, or this very call had
      // taken effect before a retry); the server goes on without this report either way.
      this.worker.log("failure not reported", { ...this.where, error: rpcErr.message });
    }
  }

  call(method, request, retryForMs) {
    return call(this.worker.rpc.workers, method, request, { timeoutMs: CALL_TIMEOUT_MS, retryForMs });
  }
}

function checkResult(result) {
  const state = result?.state;
  if (state === null || typeof state !== "object" || Array.isArray(state)) {
    throw new ApplicationError("a node must return { state: an object, next, output }", {
      type: "TypeError",
      nonRetryable: true,
    });
  }
}

function outcome(record, name) {
  if (record.error) {
    if (record.error.type === "RunCancelledError") throw new RunCancelledError(record.error.message);
    throw new ActivityError(name, record.seq, record.error);
  }
  return parseJson(record.result);
}

/** Stable across the attempts of this call: for the systems an activity calls to de-duplicate. */
function idempotencyKey(task, seq) {
  return createHash("sha256").update(`${task.run_id}:${task.step_index}:${seq}`).digest("hex");
}

/** sfc32 seeded from the SHA-256 of `seed`: the same numbers for the same seed, on any machine. */
function seededRandom(seed) {
  const words = createHash("sha256").update(seed).digest();
  let [a, b, c, d] = [0, 4, 8, 12].map((i) => words.readUInt32LE(i));
  return () => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
}
