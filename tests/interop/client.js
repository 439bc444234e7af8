// A real foreign Resque client for the interop tests: node-resque, talking to
// the test's private redis-server over its unix socket.
//   node client.js SOCKET enqueue QUEUE CLASS ARGS_JSON
//   node client.js SOCKET enqueue-at MILLIS QUEUE CLASS ARGS_JSON  (node-resque's enqueueAt)
//   node client.js SOCKET enqueue-in MILLIS QUEUE CLASS ARGS_JSON   (node-resque's enqueueIn)
//   node client.js SOCKET inspect        -> one JSON document on stdout
//   node client.js SOCKET fail-one QUEUE -> a node-resque worker fails one NodeFail job
//   node client.js SOCKET register QUEUE -> registers a node-resque worker, exits without unregistering
//   node client.js SOCKET scheduler      -> runs node-resque's Scheduler (polling every 20 ms)
//                                           until SIGTERM, then prints how many items it moved
"use strict";
const { Queue, Scheduler, Worker } = require("node-resque");
const IORedis = require("ioredis");

async function main() {
  const [socket, command, ...rest] = process.argv.slice(2);
  const redis = new IORedis({ path: socket, lazyConnect: false });
  const queue = new Queue({ connection: { redis, namespace: "resque" } });
  await queue.connect();
  try {
    if (command === "enqueue") {
      const [q, cls, args] = rest;
      await queue.enqueue(q, cls, JSON.parse(args));
    } else if (command === "enqueue-at") {
      const [at, q, cls, args] = rest;
      await queue.enqueueAt(Number(at), q, cls, JSON.parse(args));
    } else if (command === "enqueue-in") {
      const [ms, q, cls, args] = rest;
      await queue.enqueueIn(Number(ms), q, cls, JSON.parse(args));
    } else if (command === "inspect") {
      const out = {
        workers: await queue.workers(),
        working: await queue.allWorkingOn(),
        failed: await queue.failed(0, -1),
        failedCount: await queue.failedCount(),
        stats: await queue.stats(),
        queues: await queue.queues(),
      };
      process.stdout.write(JSON.stringify(out));
    } else if (command === "fail-one") {
      await failOne(redis, rest[0]);
    } else if (command === "register") {
      const worker = new Worker(
        { connection: { redis, namespace: "resque" }, queues: [rest[0]] },
        {},
      );
      await worker.connect();
      await worker.init();
      // Gone without unregistering, as a crashed worker is.
      process.exit(0);
    } else if (command === "scheduler") {
      await runScheduler(redis);
    } else {
      throw new Error(`unknown command ${command}`);
    }
  } finally {
    // node-resque leaves a client it was handed open; close it ourselves.
    await queue.end();
    redis.disconnect();
  }
}

// Runs a node-resque worker until it has failed one NodeFail job.
async function failOne(redis, q) {
  const jobs = {
    NodeFail: {
      perform: async () => {
        throw new Error("node job failed on purpose");
      },
    },
  };
  const worker = new Worker(
    { connection: { redis, namespace: "resque" }, queues: [q], timeout: 20 },
    jobs,
  );
  await worker.connect();
  await new Promise((resolve) => {
    worker.on("failure", () => resolve());
    worker.start();
  });
  await worker.end();
}

// node-resque's own Scheduler, promoting delayed items beside other
// promoters until SIGTERM; prints the number of items it moved.
async function runScheduler(redis) {
  const scheduler = new Scheduler({
    connection: { redis, namespace: "resque" },
    timeout: 20,
  });
  let moved = 0;
  scheduler.on("transferredJob", () => {
    moved += 1;
  });
  scheduler.on("error", (e) => console.error(`scheduler: ${e}`));
  await scheduler.connect();
  await scheduler.start();
  process.stderr.write("scheduler started\n");
  await new Promise((resolve) => process.once("SIGTERM", resolve));
  await scheduler.end();
  process.stdout.write(`${moved}\n`);
}

main().catch((e) => {
  console.error(`client.js: ${e.stack || e}`);
  process.exit(1);
});
