/**
 * The node agent keeps warm starts for the images it ran, and releases them once an image has
 * not run for `warmIdleSeconds`, or when more than `warmMaxImages` images have run: checked on the real processes (bubblewrap launchers) the process
 * driver keeps ready.
 */
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import type { SandboxRecord } from "../../../runtime/lib";
import { NodeAgent } from "../../../runtime/node-agent/agent";
import type { NodeAgentConfig } from "../../../runtime/node-agent/config";
import { createDriver } from "../../../runtime/node-agent/drivers";
import { buildBusyboxImage } from "../../helpers/images";
import { eventually } from "../../helpers/grpc-backends";
import { api, etcdFor, eventually as until, schedulerFor } from "../../helpers/runtime";

/**
 * How many processes' command lines mention `text` (the launchers' rootfs is under the cache;
 * bubblewrap runs as two processes per launcher).
 */
async function processesMentioning(text: string): Promise<number> {
  let count = 0;
  for (const entry of await readdir("/proc")) {
    if (!/^[0-9]+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "");
    if (cmdline.includes(text)) count++;
  }
  return count;
}

/**
 * Real etcd, a scheduler and one process-driver node agent with `warm` settings; `run` creates a
 * sandbox of `image` running `true`, waits until it exited and returns its record.
 */
async function warmNode(
  t: ExecutionContext,
  name: string,
  warm: Pick<NodeAgentConfig, "warmIdleSeconds" | "warmMaxImages">,
) {
  const etcd = await etcdFor(t);
  const scheduler = await schedulerFor(t, etcd);
  const dir = await mkdtemp(join(tmpdir(), `sw-${name}-`));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const cacheDir = join(dir, "cache");
  const agent = new NodeAgent({
    name,
    etcdEndpoints: [etcd.endpoint],
    driver: createDriver("process", { imageStore: { cacheDir } }),
    capacity: { cpuMillis: 4000, memoryMiB: 4096 },
    dataDir: join(dir, "data"),
    warmPerImage: 1,
    ...warm,
    resyncMs: 200,
  });
  await agent.start();
  t.teardown(() => agent.close());
  const run = async (id: string, image: string) => {
    const created = await api<SandboxRecord>(
      scheduler.url,
      "/v1/sandboxes?wait=exited&timeout=60",
      { method: "POST", body: JSON.stringify({ id, image, command: ["true"] }) },
    );
    t.is(created.body.status.phase, "exited");
    return created.body;
  };
  return { dir, cacheDir, run };
}

test("an image's warm starts are kept after a run and released once it has been idle", async (t) => {
  const { dir, cacheDir, run: runImage } = await warmNode(t, "warm-node", { warmIdleSeconds: 8 });
  const image = buildBusyboxImage(join(dir, "image"));
  const run = (id: string) => runImage(id, image);
  const warmKept = async () => (await processesMentioning(cacheDir)) > 0;
  await run("first");
  t.true(await eventually(warmKept, true), "a warm launcher is kept for the image");
  const secondAt = Date.now();
  const second = await run("second");
  t.is(second.status.start, "warm", "a run within the idle time starts warm");
  t.true(await eventually(warmKept, true), "the pool was refilled");

  t.is(
    await eventually(() => processesMentioning(cacheDir), 0, 30_000),
    0,
    "released after the image was idle",
  );
  const after = Date.now() - secondAt;
  t.true(after >= 8_000, `not before warmIdleSeconds after the last run (${after} ms)`);
  t.log(`warm pool released ${after} ms after the last run (warmIdleSeconds 8)`);
  const third = await run("third");
  t.is(third.status.start, "cold", "the next run starts cold, and the pool comes back");
  t.true(await eventually(warmKept, true));
});

test("warm starts are kept for at most warmMaxImages images: the least recently run is released first", async (t) => {
  const {
    dir,
    cacheDir,
    run: runImage,
  } = await warmNode(t, "warm-max-node", {
    warmMaxImages: 2,
  });
  const images = ["a", "b", "c"].map((name) => buildBusyboxImage(join(dir, `image-${name}`)));
  const run = async (id: string, image: string) => (await runImage(id, image)).status.start;
  const [a, b, c] = images as [string, string, string];
  await run("a-1", a);
  // One image's warm launcher, in processes (bubblewrap may run as more than one).
  // (read twice, 300 ms apart, so a launcher still starting is not counted half).
  const perImage = await until("a warm launcher", async () => {
    const count = await processesMentioning(cacheDir);
    await new Promise((r) => setTimeout(r, 300));
    return count > 0 && count === (await processesMentioning(cacheDir)) ? count : undefined;
  });
  await run("b-1", b);
  await run("c-1", c);
  t.is(
    await eventually(() => processesMentioning(cacheDir), 2 * perImage, 30_000),
    2 * perImage,
    "the warm starts of two images, not three",
  );
  t.is(await run("c-2", c), "warm", "the most recently run image kept its warm start");
  t.is(await run("a-2", a), "cold", "the least recently run image's warm start was released");
});
