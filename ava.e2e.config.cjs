// End-to-end tests (`npm run test:e2e`): real etcd, kube-apiserver, controller manager and the Pulumi
// engine. Not part of `npm test`: they need the tools that `npm run tools` builds (minutes, once).
module.exports = {
  files: ["test/e2e/**/*.test.ts"],
  extensions: { ts: "commonjs" },
  nodeArguments: ["--import=tsx"],
  // Child processes, not worker threads: Pulumi's closure serialization and the daemons we spawn
  // are simpler to reason about (and to clean up) in a process of their own.
  workerThreads: false,
  concurrency: 1,
  timeout: "10m",
};
