/**
 * The conformance suite every sandbox driver must pass. A per-driver test file calls
 * `driverConformance(name, makeDriver)`; the tests run against a real driver on this host.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import { sandboxSpecSchema, type Driver } from "../../../contract/model";
import type {
  DriverCapabilities,
  RunningSandbox,
  SandboxDriver,
  SandboxExit,
} from "../../../runtime/node-agent/driver";
import { buildBusyboxImage } from "../../helpers/images";

/** What a driver factory gets: a private image cache directory for this suite. */
export interface ConformanceContext {
  readonly imageCacheDir: string;
}

export interface ConformanceOptions {
  /** How long one sandbox may take to start and finish, in ms (VM drivers boot slowly). Default 20 s. */
  readonly sandboxTimeoutMillis?: number;
}

/** Registers the conformance tests for one driver in the calling test file. */
export function driverConformance(
  name: Driver,
  makeDriver: (context: ConformanceContext) => SandboxDriver | Promise<SandboxDriver>,
  options: ConformanceOptions = {},
): void {
  const timeout = options.sandboxTimeoutMillis ?? 20_000;
  const root = mkdtempSync(join(tmpdir(), `sw-conformance-${name}-`));
  let driver: SandboxDriver | undefined;
  let capabilities: DriverCapabilities | undefined;
  let image = "";
  let coldImage = "";
  let counter = 0;

  const spec = (command: string[], extra: Record<string, unknown> = {}) =>
    sandboxSpecSchema.parse({ image, command, ...extra });

  /** Runs a sandbox to completion and returns its exit and log. */
  async function runToExit(
    command: string[],
    extra: Record<string, unknown> = {},
  ): Promise<{ sandbox: RunningSandbox; exit: SandboxExit; log: string }> {
    const d = driver!;
    counter += 1;
    const id = `conf-${counter}`;
    const workDir = mkdtempSync(join(root, `${id}-`));
    const logFile = join(workDir, "log");
    const sandbox = await d.run({ id, spec: spec(command, extra), workDir, logFile });
    const exit = await withTimeout(sandbox.exit, timeout, `sandbox ${id} did not finish`);
    return { sandbox, exit, log: readFileSync(logFile, "utf8") };
  }

  test.before(async () => {
    image = buildBusyboxImage(join(root, "layout"), { tag: "conformance" });
    coldImage = buildBusyboxImage(join(root, "layout"), {
      tag: "cold",
      layers: [{ files: { "etc/variant": "cold\n" } }],
    });
    driver = await makeDriver({ imageCacheDir: join(root, "cache") });
    const probe = await driver.probe();
    if (!probe.usable)
      throw new Error(`${name} driver is not usable on this host: ${probe.reason}`);
    capabilities = probe.capabilities;
    await driver.prepare(image);
    await driver.prepare(coldImage);
  });

  test.after.always(async () => {
    await driver?.close();
    rmSync(root, { recursive: true, force: true });
  });

  test.serial(`${name}: probe reports its capabilities`, async (t) => {
    const probe = await driver!.probe();
    if (!probe.usable) return t.fail(probe.reason);
    t.is(probe.capabilities.driver, name);
    t.true(probe.capabilities.notes.length > 0, "notes tell the user what this host gives");
    if (!probe.capabilities.hardwareIsolated) {
      t.true(
        probe.capabilities.notes.some((n) => /not hardware.isolated/i.test(n)),
        "a driver without hardware isolation says so in its notes",
      );
    }
    if (probe.capabilities.liveMigration) t.true(probe.capabilities.snapshots);
  });

  test.serial(
    `${name}: runs a command, reports exit 0 and writes its output to the log file`,
    async (t) => {
      const { exit, log, sandbox } = await runToExit([
        "sh",
        "-c",
        "echo hello from the sandbox; echo to stderr >&2",
      ]);
      t.deepEqual(exit, { kind: "exited", code: 0 });
      t.regex(log, /hello from the sandbox/);
      t.regex(log, /to stderr/, "stderr is in the same log");
      t.true(sandbox.startMillis >= 0);
    },
  );

  test.serial(`${name}: reports a non-zero exit code`, async (t) => {
    const { exit } = await runToExit(["sh", "-c", "exit 7"]);
    t.deepEqual(exit, { kind: "exited", code: 7 });
  });

  test.serial(`${name}: passes the spec's environment`, async (t) => {
    const { exit, log } = await runToExit(["sh", "-c", 'echo "greeting=[$GREETING]"'], {
      env: { GREETING: "it's a 'quoted' value" },
    });
    t.deepEqual(exit, { kind: "exited", code: 0 });
    t.regex(log, /greeting=\[it's a 'quoted' value\]/);
  });

  test.serial(
    `${name}: sees the image, not the host filesystem, and cannot change the image`,
    async (t) => {
      const hostSecret = join(root, "host-secret");
      writeFileSync(hostSecret, "secret\n");
      const { log } = await runToExit([
        "sh",
        "-c",
        `cat /etc/image-marker; test -e ${hostSecret} && echo HOST-VISIBLE || echo HOST-HIDDEN; echo changed > /etc/image-marker 2>/dev/null; true`,
      ]);
      t.regex(log, /busybox test image/, "the image's files are the root");
      t.regex(log, /HOST-HIDDEN/);
      t.notRegex(log, /HOST-VISIBLE/);
      const again = await runToExit(["cat", "/etc/image-marker"]);
      t.regex(
        again.log,
        /busybox test image/,
        "a write in one sandbox does not change the image for the next",
      );
    },
  );

  test.serial(`${name}: stop kills a long-running sandbox and frees it`, async (t) => {
    const d = driver!;
    const workDir = mkdtempSync(join(root, "stop-"));
    const sandbox = await d.run({
      id: "conf-stop",
      spec: spec(["sleep", "600"]),
      workDir,
      logFile: join(workDir, "log"),
    });
    let settled = false;
    void sandbox.exit.then(() => (settled = true));
    await new Promise((resolve) => setTimeout(resolve, 200));
    t.false(settled, "sleep 600 is still running before stop");
    await withTimeout(sandbox.stop(), timeout, "stop did not return");
    const exit = await withTimeout(sandbox.exit, timeout, "exit did not settle after stop");
    t.true(
      exit.kind === "failed" || exit.code !== 0,
      `a stopped sandbox does not report success (${JSON.stringify(exit)})`,
    );
    await sandbox.stop(); // idempotent
    const after = await runToExit(["true"]);
    t.deepEqual(
      after.exit,
      { kind: "exited", code: 0 },
      "the driver still runs sandboxes after a stop",
    );
  });

  test.serial(`${name}: starts cold without warm capacity and warm once warmed`, async (t) => {
    const cold = await runToExit(["cat", "/etc/variant"], { image: coldImage });
    t.is(cold.sandbox.start, "cold");
    t.regex(cold.log, /cold/);
    await driver!.warm(coldImage, 1);
    const next = await runToExit(["cat", "/etc/variant"], { image: coldImage });
    t.regex(next.log, /cold/);
    if (capabilities!.warmStart === "none") {
      t.is(next.sandbox.start, "cold", "a driver without warm starts reports cold");
    } else {
      t.is(next.sandbox.start, "warm", "warm capacity serves the start");
      t.deepEqual(next.exit, { kind: "exited", code: 0 });
    }
  });

  test.serial(`${name}: has no network unless asked`, async (t) => {
    const { log } = await runToExit([
      "sh",
      "-c",
      "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '",
    ]);
    const interfaces = log.split("\n").filter(Boolean);
    t.deepEqual(
      interfaces.filter((i) => i !== "lo"),
      [],
      `only loopback without spec.network (saw: ${interfaces.join(", ")})`,
    );
  });

  test.serial(`${name}: a bad image is a clear error and the driver keeps working`, async (t) => {
    const d = driver!;
    const workDir = mkdtempSync(join(root, "bad-"));
    const missing = join(root, "no-such-layout");
    const run = (bad: string) =>
      d.run({
        id: "conf-bad",
        spec: sandboxSpecSchema.parse({ image: bad, command: ["true"] }),
        workDir,
        logFile: join(workDir, "log"),
      });
    const notFound = await t.throwsAsync(run(`oci:${missing}:latest`));
    t.true(notFound.message.includes(missing), `the error names the layout: ${notFound.message}`);
    const malformed = await t.throwsAsync(run("just-a-name"));
    t.regex(
      malformed.message,
      /registry host/,
      `the error says what is wrong: ${malformed.message}`,
    );
    const after = await runToExit(["true"]);
    t.deepEqual(after.exit, { kind: "exited", code: 0 });
  });

  test.serial(`${name}: concurrent sandboxes are isolated from each other`, async (t) => {
    const results = await Promise.all(
      [1, 2, 3].map((i) =>
        runToExit([
          "sh",
          "-c",
          `echo ${i} > /tmp/mine-${i}; sleep 1; ls /tmp | tr '\\n' ' '; exit ${i}`,
        ]),
      ),
    );
    results.forEach(({ exit, log }, index) => {
      const i = index + 1;
      t.deepEqual(exit, { kind: "exited", code: i });
      t.is(log.trim(), `mine-${i}`, `sandbox ${i} sees only its own /tmp`);
    });
  });
}

async function withTimeout<T>(promise: Promise<T>, millis: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} within ${millis} ms`)), millis);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
