/**
 * `npm run rollout` as a user runs it, for the mistakes it must refuse before touching any stack:
 * each ends with exit code 2 and one line per problem saying what to fix, never a stack trace.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";

const ROOT = join(__dirname, "../../..");

function rollout(args: string[], env: Record<string, string> = {}) {
  const run = spawnSync(process.execPath, ["--import", "tsx", "stacks/rollout.ts", ...args], {
    cwd: ROOT,
    encoding: "utf8",
    env: { ...process.env, SHARDWORKS_PLATFORM_TOKEN: "", ...env },
    timeout: 60_000,
  });
  return { code: run.status, stderr: run.stderr, stdout: run.stdout };
}

const dir = mkdtempSync(join(tmpdir(), "sw-rollout-cli-"));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

function planFile(name: string, text: string): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

test("--help prints the usage and exits 0", (t) => {
  const help = rollout(["--help"]);
  t.is(help.code, 0);
  t.regex(help.stdout, /Usage: rollout \[options\]/);
  t.regex(help.stdout, /--plan <file>/);
  t.regex(help.stdout, /--image <name@sha256:digest>/);
});

test("an --image not pinned by digest is refused, naming the flag and how to get one", (t) => {
  for (const image of ["ghcr.io/shardworks/runtime:0.2.0", `runtime@sha256:${"a".repeat(63)}`]) {
    const run = rollout([
      ...["--plan", "stacks/rollout.local.yaml", "--version", "0.2.0", "--image", image],
      "--dry-run",
    ]);
    t.is(run.code, 2, image);
    t.is(
      run.stderr,
      '--image: must be pinned by digest, "<name>@sha256:<64 hex>"; `npm run images -- build runtime` builds it, pushes it (--registry <host[/prefix]> for yours) and prints the reference\n',
    );
    t.is(run.stdout, "", "nothing was read or printed");
  }
});

test("a missing required option or a bad --version is refused with exit code 2", (t) => {
  const noPlan = rollout(["--version", "0.2.0"]);
  t.is(noPlan.code, 2);
  t.regex(noPlan.stderr, /required option '--plan <file>' not specified/);
  const badVersion = rollout(["--plan", "stacks/rollout.local.yaml", "--version", "latest!"]);
  t.is(badVersion.code, 2);
  t.regex(badVersion.stderr, /^--version: /m);
  t.notRegex(badVersion.stderr, /\bat .+\.ts:\d+/, "no stack trace");
});

test("a plan file that is missing or invalid is named, one line per problem", (t) => {
  const missing = rollout(["--plan", join(dir, "nope.yaml"), "--version", "0.2.0"]);
  t.is(missing.code, 2);
  t.regex(missing.stderr, /^cannot read plan file .*nope\.yaml: ENOENT/m);
  const invalid = planFile(
    "bad.yaml",
    [
      "waves:",
      "  - stacks: [platform-a]",
      "state: s.json",
      "targets:",
      "  platform-z: { schedulerUrl: nowhere }",
      "",
    ].join("\n"),
  );
  const bad = rollout(["--plan", invalid, "--version", "0.2.0"]);
  t.is(bad.code, 2);
  t.deepEqual(bad.stderr.trim().split("\n").sort(), [
    'targets.platform-z.schedulerUrl: must be an http(s) URL, e.g. "http://127.0.0.1:7070"',
    'targets.platform-z: "platform-z" is in no wave; list it in waves or remove it',
  ]);
});

test("without a platform token the gates cannot run: refused before any stack is touched", (t) => {
  const plan = planFile("ok.yaml", "waves:\n  - stacks: [platform-a]\nstate: ok.json\n");
  const run = rollout(["--plan", plan, "--version", "0.2.0"]);
  t.is(run.code, 2);
  t.regex(run.stderr, /--platform-token \(or \$SHARDWORKS_PLATFORM_TOKEN\) is required/);
  t.is(run.stdout, "", "nothing was started");
});
