/**
 * Pure parts of the qemu driver: the command script handed to the guest agent (executed here by a
 * real busybox shell, as in the guest), the options section's validation, the TCG timing parameters.
 */
import test from "ava";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sandboxSpecSchema } from "../../contract/model";
import { commandScript, parseQemuDriverConfig } from "../../runtime/node-agent/drivers/qemu";
import { guestMemoryFor } from "../../runtime/node-agent/drivers/qemu/images";
import { tcgTimingParams } from "../../runtime/node-agent/drivers/qemu/command-line";

test("the command script keeps arguments and env values byte for byte through busybox sh", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "sw-qemu-script-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const tricky = `it's "x" $HOME \`id\` \\ ; | & * \n second line`;
  const spec = sandboxSpecSchema.parse({
    image: "oci:/x",
    command: [
      "sh",
      "-c",
      'printf "[%s]|[%s]|[%s]|%s" "$1" "$TRICKY" "$FROM_IMAGE" "$(pwd)"',
      "-",
      tricky,
    ],
    env: { TRICKY: tricky },
  });
  const script = commandScript(spec, {
    digest: "sha256:0",
    rootfs: "/",
    env: { FROM_IMAGE: "image value", "bad-name": "skipped" },
    workingDir: dir,
  });
  const out = execFileSync("/bin/busybox", ["sh", "-c", script], { encoding: "utf8" });
  t.is(out, `[${tricky}]|[${tricky}]|[image value]|${dir}`);
});

test("the command script sets the guest clock first when given the time", (t) => {
  const spec = sandboxSpecSchema.parse({ image: "oci:/x", command: ["true"] });
  const script = commandScript(spec, { digest: "sha256:0", rootfs: "/" }, 1_700_000_000_400);
  t.is(script.split("\n")[0], "/.shardworks/busybox date -u -s @1700000000 >/dev/null 2>&1");
  t.false(commandScript(spec, { digest: "sha256:0", rootfs: "/" }).includes("date -u -s"));
});

test("a spec env name a shell cannot export is refused, naming the field", (t) => {
  const spec = sandboxSpecSchema.parse({ image: "oci:/x", command: ["true"], env: { "A-B": "1" } });
  t.throws(() => commandScript(spec, { digest: "sha256:0", rootfs: "/" }), {
    message: /^spec\.env\.A-B: must be a shell variable name/,
  });
});

test("qemu driver options are validated field by field", (t) => {
  t.deepEqual(parseQemuDriverConfig(undefined), {});
  t.deepEqual(parseQemuDriverConfig({ accel: "tcg", nice: 5 }), { accel: "tcg", nice: 5 });
  const cases: [unknown, RegExp][] = [
    [{ accel: "hvf" }, /qemu\.accel: /],
    [{ nice: 40 }, /qemu\.nice: /],
    [{ bootTimeoutMs: -1 }, /qemu\.bootTimeoutMs: /],
    [{ cacheDirr: "/x" }, /qemu: .*cacheDirr/],
  ];
  for (const [input, message] of cases) {
    t.throws(() => parseQemuDriverConfig(input), { message }, JSON.stringify(input));
  }
});

test("TCG timing parameters come from the host's CPU frequency", (t) => {
  t.is(
    tcgTimingParams("cpu MHz\t\t: 2600.000\n"),
    "tsc_early_khz=2600000 lpj=10400000 tsc=reliable no_timer_check",
  );
  t.is(tcgTimingParams(""), "tsc_early_khz=2000000 lpj=8000000 tsc=reliable no_timer_check");
});

test("guest RAM grows with the image's initramfs, never below 128 MiB", (t) => {
  t.is(guestMemoryFor(4 * 2 ** 20), 128);
  t.is(guestMemoryFor(60 * 2 ** 20), 288); // 3 × 60 + 96 = 276 → 288
});
