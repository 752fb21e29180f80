// Errors node code may throw or see, and how each becomes a wire Failure.

/** A failure of node code; `type` is matched against the node's non_retryable_errors. */
export class ApplicationError extends Error {
  constructor(message, { type = "ApplicationError", nonRetryable = false } = {}) {
    super(message);
    this.name = "ApplicationError";
    this.type = type;
    this.nonRetryable = nonRetryable;
  }
}

/** The run is being cancelled: thrown into node code at its next ctx call, and by ctx.signal. */
export class RunCancelledError extends Error {
  constructor(message = "cancelled") {
    super(message);
    this.name = "RunCancelledError";
  }
}

/** Another attempt holds the task now: this one stops and writes nothing more. */
export class LeaseLostError extends Error {
  constructor(message = "the lease of this attempt was lost") {
    super(message);
    this.name = "LeaseLostError";
  }
}

/** The worker is stopping: the attempt is handed back to the server unrun. */
export class ShutdownError extends Error {
  constructor() {
    super("the worker is shutting down");
    this.name = "ShutdownError";
  }
}

/** A recorded activity failed for good; its recorded failure is `failure`. */
export class ActivityError extends Error {
  constructor(name, seq, failure) {
    super(`activity ${name} (seq ${seq}) failed: ${failure.type}: ${failure.message}`);
    this.name = "ActivityError";
    this.type = "ActivityError";
    this.failure = failure;
  }
}

/** The step recorded another call at this seq than the node code makes now. */
export class NondeterminismError extends Error {
  constructor(seq, recorded, requested) {
    super(`at seq ${seq} the step recorded ${recorded}, the node now asks for ${requested}`);
    this.name = "NondeterminismError";
    this.type = "NondeterminismError";
    this.nonRetryable = true;
  }
}

/** The wire Failure of an error thrown by node code or an activity. */
export function failureOf(err) {
  if (!(err instanceof Error)) return { message: String(err), type: typeof err, non_retryable: false, details: "" };
  return {
    message: err.message || err.name,
    type: err.type || err.name,
    non_retryable: Boolean(err.nonRetryable),
    details: (err.stack || "").slice(-16_000),
  };
}
