// Start a run and wait for its end:  node src/start_run.js GRAPH_ID '{"text": "hello"}' [--address HOST:PORT]
//                                                        [--tenant T --project P]
//
// RunService from the wire too: StartRun, then WaitRun until the run has ended. Prints the run's
// status and its last state (or its failure).

import { randomUUID } from "node:crypto";
import { parseArgs } from "node:util";

import { canonicalBytes, parseJson } from "./canonical.js";
import { call, connect, duration } from "./rpc.js";

const ENDED = new Set(["RUN_STATUS_COMPLETED", "RUN_STATUS_FAILED", "RUN_STATUS_CANCELLED", "RUN_STATUS_TERMINATED"]);

const { values: options, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    address: { type: "string", default: process.env.CMO_ADDRESS || "127.0.0.1:7233" },
    tenant: { type: "string", default: process.env.CMO_TENANT || "" },
    project: { type: "string", default: process.env.CMO_PROJECT || "" },
  },
});
const [graphId, input = "{}"] = positionals;
if (!graphId) {
  console.error("usage: node src/start_run.js GRAPH_ID [INPUT_JSON] [--address HOST:PORT] [--tenant T --project P]");
  process.exit(2);
}

const rpc = connect(options.address);
try {
  const namespace = { tenant: options.tenant, project: options.project }; // empty parts: "default"
  const start = { run_id: randomUUID(), graph_id: graphId, input: canonicalBytes(JSON.parse(input)), namespace };
  let { run } = await call(rpc.runs, "StartRun", start, { timeoutMs: 30_000 });
  console.log(`started ${run.run_id}`);
  while (!ENDED.has(run.status)) {
    const wait = { run_id: run.run_id, timeout: duration(30_000), namespace };
    ({ run } = await call(rpc.runs, "WaitRun", wait, { timeoutMs: 40_000 }));
  }
  console.log(run.status.replace("RUN_STATUS_", ""), JSON.stringify(parseJson(run.result) ?? run.failure));
} catch (err) {
  console.error(err.message); // a status's message is meant to be shown as it is
  process.exitCode = 1;
} finally {
  rpc.close();
}
