// Run the Node.js worker:  node src/main.js [--address HOST:PORT] [--worker-id ID] [--concurrency N]
//                                           [--tenant T --project P]
//
// Prints `ready <worker_id>` once its graph is registered, then one line per event. SIGTERM or
// SIGINT stops it: running tasks get a grace period, then are handed back to the server.

import os from "node:os";
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";

import { TASK_QUEUE, agentsGraph, jsGraph, mixedGraph } from "./graphs.js";
import { connect } from "./rpc.js";
import { Worker } from "./worker.js";

const { values: options } = parseArgs({
  options: {
    address: { type: "string", default: process.env.CMO_ADDRESS || "127.0.0.1:7233" },
    "worker-id": { type: "string", default: `${os.hostname()}-${process.pid}-${randomBytes(3).toString("hex")}` },
    concurrency: { type: "string", default: "2" },
    "poll-wait": { type: "string", default: "20" },
    "shutdown-grace": { type: "string", default: "5" },
    tenant: { type: "string", default: process.env.CMO_TENANT || "" },
    project: { type: "string", default: process.env.CMO_PROJECT || "" },
  },
});

const rpc = connect(options.address);
const worker = new Worker({
  rpc,
  workerId: options["worker-id"],
  graphs: [jsGraph, mixedGraph, agentsGraph],
  taskQueues: [TASK_QUEUE],
  concurrency: Number(options.concurrency),
  pollWaitMs: Number(options["poll-wait"]) * 1000,
  namespace: options.tenant || options.project ? { tenant: options.tenant, project: options.project } : null,
});

let stopping = null;
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    stopping ??= worker.stop(Number(options["shutdown-grace"]) * 1000);
  });
}

try {
  await worker.run({ onReady: () => console.log(`ready ${worker.workerId}`) });
  await stopping;
} finally {
  rpc.close();
}
