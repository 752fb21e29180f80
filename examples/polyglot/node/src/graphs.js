// What this worker runs: a graph of its own, and one node of a graph written in Python.

import { setTimeout as sleep } from "node:timers/promises";

import { canonicalBytes, sha256Hex } from "./canonical.js";

/** The task queue of every node this worker runs. */
export const TASK_QUEUE = "node-js";

const WORK_TICK_MS = 100;

// -- polyglot-js@1: fetch -> summarise, both here ------------------------------------------------

/**
 * `fetch` looks the text up in a recorded activity, then works `work_seconds` (heartbeating, and
 * stopping at once if the run is cancelled); `summarise` writes the summary and finishes.
 */
export const jsGraph = {
  graphId: "polyglot-js",
  version: 1,
  definition: {
    graph_id: "polyglot-js",
    version: 1,
    entry_node: "fetch",
    nodes: [
      // A set RetryPolicy: each zero field is its default, so max_attempts must be given (0 = no limit).
      {
        node_id: "fetch",
        task_queue: TASK_QUEUE,
        retry: { max_attempts: 3, initial_interval: { seconds: 0, nanos: 200e6 } },
      },
      { node_id: "summarise", task_queue: TASK_QUEUE, retry: null }, // unset: the default policy
    ],
    edges: [{ from_node: "fetch", key: "summarise", to_node: "summarise" }],
  },
  nodes: {
    async fetch(state, ctx) {
      const lookup = await ctx.activity("lookup", [state.text], async () => ({
        length: [...state.text].length,
        upper: state.text.toUpperCase(),
      }));
      await work(state.work_seconds ?? 0, ctx.signal);
      return checkpoint({ ...state, lookup, fetched_at: ctx.logicalTime.toISOString() }, "summarise");
    },
    async summarise(state) {
      const labels = { z: 1, é: 2, "\uff5a": 3, "\u{1f600}": 4 }; // sorted by code point on the wire
      const summary = `${state.lookup.upper} (${state.lookup.length} characters)`;
      return checkpoint({ ...state, summary, ratio: state.lookup.length / 1e6, labels }, "__end__");
    },
  },
};

// -- polyglot-mixed@1 (examples/polyglot/mixed_graph.py): prepare -> enrich -> finish ------------

/** The one node of the Python graph that runs here; the others run in a Python cmo.Worker. */
export const mixedGraph = { graphId: "polyglot-mixed", version: 1, nodes: { enrich: enrichThen("finish") } };

// -- polyglot-agents@1 (mixed_graph.py): prepare -> enrich (here) -> review (asks a specialist) --

/** The same node in a graph whose last step asks whichever agent can review the text. */
export const agentsGraph = { graphId: "polyglot-agents", version: 1, nodes: { enrich: enrichThen("review") } };

/** `enrich`: count the words in a recorded activity, then go on to `next`. */
function enrichThen(next) {
  return async function enrich(state, ctx) {
    const counts = await ctx.activity("count_words", [state.words], async () => countWords(state.words));
    return checkpoint({ ...state, counts, enriched_by: "node" }, next);
  };
}

/**
 * A node's result, with the SHA-256 of the state's canonical JSON as its output: the server
 * hashes the state it stores the same way, so the two must be equal (the end-to-end test checks).
 */
function checkpoint(state, next) {
  return { state, next, output: { state_hash: sha256Hex(canonicalBytes(state)) } };
}

function countWords(words) {
  const counts = {};
  for (const word of words) counts[word] = (counts[word] ?? 0) + 1;
  return counts;
}

/** Busy for `seconds`, in ticks, so that the worker's heartbeats keep the lease meanwhile. */
async function work(seconds, signal) {
  const until = Date.now() + seconds * 1000;
  while (Date.now() < until) await sleep(WORK_TICK_MS, undefined, { signal });
}
