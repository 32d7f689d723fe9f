/**
 * `npm run bench`: runs every `bench/*.bench.ts` in its own process, one after another (the
 * machine is small and noisy: benches never overlap), and lists the result files they wrote.
 * Select some with `npm run bench -- placement xds`.
 */
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";

const dir = __dirname;
const wanted = process.argv.slice(2);
const benches = readdirSync(dir)
  .filter((f) => f.endsWith(".bench.ts"))
  .filter((f) => wanted.length === 0 || wanted.some((w) => f.startsWith(w)))
  .sort();
if (benches.length === 0) {
  console.error(`no bench matches ${wanted.join(", ") || "bench/*.bench.ts"}`);
  process.exit(1);
}
let failed = 0;
for (const bench of benches) {
  const started = Date.now();
  console.log(`\n▶ ${bench}`);
  const result = spawnSync(process.execPath, ["--import=tsx", join(dir, bench)], {
    stdio: "inherit",
  });
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  if (result.status === 0) console.log(`✔ ${bench} (${seconds} s)`);
  else {
    failed++;
    console.log(`✖ ${bench} failed (exit ${result.status ?? result.signal}, ${seconds} s)`);
  }
}
console.log(`\nresults: ${join(dir, "results")}/*.json`);
process.exit(failed === 0 ? 0 : 1);
