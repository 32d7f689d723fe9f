/** `npm run tools -- …` as a user types it: help, and a name it does not know (no build starts). */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import test from "ava";

const ROOT = join(__dirname, "..", "..", "..");
const tools = (...args: string[]) =>
  spawnSync(process.execPath, ["--import", "tsx", "scripts/tools.ts", ...args], {
    cwd: ROOT,
    encoding: "utf8",
    timeout: 60_000,
  });

test("--help lists the tool names and builds nothing", (t) => {
  const help = tools("--help");
  t.is(help.status, 0, help.stderr);
  t.regex(help.stdout, /tools to build \(default: all\): kubernetes, coredns, kube-router,/);
  t.notRegex(help.stdout + help.stderr, /building|unknown tool/);
});

test("an unknown name exits 2 naming the known ones", (t) => {
  const unknown = tools("kubernets");
  t.is(unknown.status, 2);
  t.regex(
    unknown.stderr + unknown.stdout,
    /unknown tool kubernets: name one of kubernetes, coredns/,
  );
});
