import test from "ava";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { seccompFilter } from "../../runtime/node-agent/drivers/process";

const dir = mkdtempSync(join(tmpdir(), "sw-seccomp-"));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

test("the prebuilt seccomp filter (the runtime image's) is used when present, and checked", async (t) => {
  const good = join(dir, "good.bpf");
  writeFileSync(good, Buffer.alloc(16, 1));
  t.deepEqual(await seccompFilter(undefined, good), Buffer.alloc(16, 1));
  const bad = join(dir, "bad.bpf");
  writeFileSync(bad, Buffer.alloc(7));
  const error = await t.throwsAsync(seccompFilter(undefined, bad));
  t.regex(
    error?.message ?? "",
    /bad\.bpf is not a BPF program \(7 bytes.*npm run images -- build runtime/,
  );
});

test("without a prebuilt filter it is compiled here (python3-seccomp): a whole BPF program", async (t) => {
  const compiled = await seccompFilter(undefined, join(dir, "absent.bpf"));
  t.true(compiled.length > 0 && compiled.length % 8 === 0, String(compiled.length));
});
