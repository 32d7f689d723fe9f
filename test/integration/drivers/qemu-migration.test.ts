/**
 * The qemu driver keeps a running guest's state across snapshot/restore and across live migration
 * between two drivers (two node agents) over TCP: a counter keeps counting, never restarting.
 * Tests run one at a time (test.serial): the host has 2 shared cores. Real QEMU VMs (TCG here: KVM hangs on this host; the fixtures say so loudly).
 */
import test from "ava";
import { join } from "node:path";
import {
  busyboxRootfs,
  COUNTER,
  qemuDriver,
  runRequest,
  ticks,
  waitForTicks,
} from "./qemu-fixtures";

function assertStrictlyIncreasing(t: import("ava").ExecutionContext, values: number[]): void {
  for (let i = 1; i < values.length; i++) {
    t.true(
      values[i]! > values[i - 1]!,
      `counter went ${values[i - 1]} → ${values[i]} at index ${i}: ${values.join(",")}`,
    );
  }
}

test.serial(
  "snapshot to file and restore: the guest's counter continues where it was",
  async (t) => {
    const image = await busyboxRootfs(t);
    const driver = await qemuDriver(t, image);
    const before = await runRequest(t, "counter-a", COUNTER);
    const sandbox = await driver.run(before);
    t.teardown(() => sandbox.stop());
    const first = await waitForTicks(before.logFile, 5);

    const file = join(before.workDir, "suspended.vmstate");
    await driver.suspend(before.id, file);
    t.deepEqual(await sandbox.exit, { kind: "failed", reason: `suspended to ${file}` });
    const atSuspend = await ticks(before.logFile);
    t.true(atSuspend.length >= first.length);

    const after = await runRequest(t, "counter-a", COUNTER);
    const resumed = await driver.resume(after, file);
    t.teardown(() => resumed.stop());
    t.is(resumed.start, "warm");
    const continued = await waitForTicks(after.logFile, 5);
    t.log(
      `before suspend: …${atSuspend.slice(-3).join(",")}; after resume: ${continued.slice(0, 3).join(",")}…; resume took ${Math.round(resumed.startMillis)} ms`,
    );
    t.true(continued[0]! > atSuspend.at(-1)!, "restarted from 0 instead of continuing");
    assertStrictlyIncreasing(t, [...atSuspend, ...continued]);
    await resumed.stop();
  },
);

test.serial(
  "live migration over TCP between two drivers: the counter keeps counting on the target",
  async (t) => {
    const image = await busyboxRootfs(t);
    const source = await qemuDriver(t, image);
    const target = await qemuDriver(t, image);
    const onSource = await runRequest(t, "counter-m", COUNTER);
    const running = await source.run(onSource);
    t.teardown(() => running.stop());
    await waitForTicks(onSource.logFile, 5);

    const onTarget = await runRequest(t, "counter-m", COUNTER);
    const { port, sandbox } = await target.acceptMigration(onTarget);
    t.true(port > 0);
    const t0 = performance.now();
    await source.migrate(onSource.id, { host: "127.0.0.1", port });
    const migrated = await sandbox;
    t.teardown(() => migrated.stop());
    t.log(`live migration took ${Math.round(performance.now() - t0)} ms`);
    t.deepEqual(await running.exit, { kind: "failed", reason: `migrated to 127.0.0.1:${port}` });

    const onSourceTicks = await ticks(onSource.logFile);
    const onTargetTicks = await waitForTicks(onTarget.logFile, 5);
    t.log(
      `source: …${onSourceTicks.slice(-3).join(",")}; target: ${onTargetTicks.slice(0, 3).join(",")}…`,
    );
    t.true(onTargetTicks[0]! > onSourceTicks.at(-1)!, "the target restarted the counter");
    assertStrictlyIncreasing(t, [...onSourceTicks, ...onTargetTicks]);

    // The source is gone: migrating again from it is refused, naming the sandbox.
    await t.throwsAsync(source.migrate(onSource.id, { host: "127.0.0.1", port }), {
      message: /counter-m is not running on this node/,
    });
    await migrated.stop();
    t.deepEqual(await migrated.exit, { kind: "failed", reason: "stopped" });
  },
);
