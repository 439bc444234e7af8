// A real foreign Resque client for the interop tests: node-resque, talking to
// the test's private redis-server over its unix socket.
//   node client.js SOCKET enqueue QUEUE CLASS ARGS_JSON
//   node client.js SOCKET inspect        -> one JSON document on stdout
"use strict";
const { Queue } = require("node-resque");
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
    } else {
      throw new Error(`unknown command ${command}`);
    }
  } finally {
    // node-resque leaves a client it was handed open; close it ourselves.
    await queue.end();
    redis.disconnect();
  }
}

main().catch((e) => {
  console.error(`client.js: ${e.stack || e}`);
  process.exit(1);
});
