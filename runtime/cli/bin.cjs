#!/usr/bin/env node
// The `shardworks` command: a CommonJS shim that lets tsx load the TypeScript entry point.
require("tsx/cjs");
require("./main.ts");
