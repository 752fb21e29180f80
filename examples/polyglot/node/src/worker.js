// The worker: register its graphs, poll with `concurrency` slots, run each task as an Attempt,
// take the next task eagerly, and on stop hand back what is still running.

import { setTimeout as sleep } from "node:timers/promises";

import { Attempt } from "./attempt.js";
import { call, duration } from "./rpc.js";

const CALL_TIMEOUT_MS = 30_000;
const POLL_SLACK_MS = 10_000; // a poll's deadline is its wait plus this: the server answers first

export class Worker {
  /**
   * @param {object} options
   * @param {object} options.rpc stubs from rpc.connect()
   * @param {string} options.workerId the id leases are bound to
   * @param {object[]} options.graphs `{ graphId, version, definition?, nodes: { [nodeId]: fn } }`:
   *   a graph with a `definition` (a GraphDef) is registered by this worker; one without is
   *   registered by others and this worker runs only the nodes it names
   * @param {string[]} options.taskQueues the queues to poll
   * @param {number} [options.concurrency] tasks run at once, one poll per free slot
   * @param {number} [options.pollWaitMs] the long poll's wait (at most 60 s)
   * @param {boolean} [options.eager] take the run's next task in the reply to a checkpoint
   * @param {object} [options.namespace] `{ tenant, project }` to serve; unset: default/default
   * @param {Function} [options.log] `(event, fields) => void`
   */
  constructor(options) {
    const { rpc, workerId, graphs, taskQueues, concurrency = 2, pollWaitMs = 20_000, eager = true } = options;
    const { namespace, log } = options;
    this.rpc = rpc;
    this.workerId = workerId;
    this.graphs = graphs;
    this.taskQueues = taskQueues;
    this.concurrency = concurrency;
    this.pollWaitMs = pollWaitMs;
    this.eager = eager;
    this.namespace = namespace ?? null; // task calls need none: the task token names it
    this.log = log ?? ((event, fields) => console.log(formatLine(event, fields)));
    this.stopping = false;
    this.polls = new Set();
    this.attempts = new Set();
  }

  /** Register the graphs, then serve until `stop()`; resolves once every slot has finished. */
  async run({ onReady } = {}) {
    for (const graph of this.graphs) {
      if (graph.definition) await this.register(graph);
      else await this.checkForeignGraph(graph);
    }
    onReady?.();
    const slots = Array.from({ length: this.concurrency }, () => this.slot());
    await Promise.all(slots);
  }

  /** Stop polling; tasks still running after `graceMs` are handed back to the server. */
  async stop(graceMs = 5_000) {
    this.stopping = true;
    for (const poll of this.polls) poll.cancel();
    const deadline = Date.now() + graceMs;
    while (this.attempts.size && Date.now() < deadline) await sleep(50);
    for (const attempt of this.attempts) attempt.release();
  }

  /** The queues to ask for the next task on in a CompleteTask: ours, unless we are stopping. */
  eagerQueues() {
    return this.eager && !this.stopping ? this.taskQueues : [];
  }

  async register(graph) {
    const request = { graph: graph.definition, namespace: this.namespace };
    const reply = await call(this.rpc.workers, "RegisterGraph", request, { timeoutMs: CALL_TIMEOUT_MS });
    this.log("registered", { graph: `${graph.graphId}@${graph.version}`, created: reply.created });
  }

  /** Check that the nodes this worker runs of a graph registered by others are on its queues. */
  async checkForeignGraph(graph) {
    const name = `${graph.graphId}@${graph.version}`;
    try {
      const { graph: stored } = await call(
        this.rpc.workers,
        "GetGraph",
        { graph_id: graph.graphId, version: graph.version, namespace: this.namespace },
        { timeoutMs: CALL_TIMEOUT_MS },
      );
      for (const node of stored.nodes.filter((n) => n.node_id in graph.nodes)) {
        if (!this.taskQueues.includes(node.task_queue)) {
          const where = { graph: name, node: node.node_id, queue: node.task_queue };
          this.log("warning: a node of ours is on a queue we do not poll", where);
        }
      }
      this.log("serving nodes of", { graph: name, nodes: Object.keys(graph.nodes).join(",") });
    } catch (err) {
      if (err.code !== "NOT_FOUND") throw err;
      // Not fatal: its tasks reach this worker once the graph's own workers have registered it.
      this.log("not registered yet", { graph: name });
    }
  }

  async slot() {
    while (!this.stopping) {
      let task = await this.poll();
      while (task) task = await this.execute(task);
    }
  }

  async poll() {
    const request = {
      worker_id: this.workerId,
      task_queues: this.taskQueues,
      graphs: this.graphs.map((g) => ({ graph_id: g.graphId, version: g.version })),
      wait: duration(this.pollWaitMs),
      namespace: this.namespace,
    };
    let pending;
    try {
      const reply = await call(this.rpc.workers, "PollTask", request, {
        timeoutMs: this.pollWaitMs + POLL_SLACK_MS,
        retryForMs: 0, // retried here, so that a poll cancelled by stop() is not retried
        onCall: (c) => {
          pending = c;
          this.polls.add(c);
        },
      });
      return reply.task;
    } catch (err) {
      if (!this.stopping) {
        this.log("poll failed, polling again", { error: err.message });
        await sleep(500 + Math.random() * 1000);
      }
      return null;
    } finally {
      this.polls.delete(pending);
    }
  }

  async execute(task) {
    const graph = this.graphs.find((g) => g.graphId === task.graph_id && g.version === task.graph_version);
    const attempt = new Attempt(this, task, graph?.nodes[task.node_id]);
    this.attempts.add(attempt);
    this.log("task", attempt.where);
    try {
      return await attempt.run();
    } finally {
      this.attempts.delete(attempt);
    }
  }
}

function formatLine(event, fields = {}) {
  const parts = Object.entries(fields).map(([key, value]) => `${key}=${value}`);
  return [event, ...parts].join(" ");
}
