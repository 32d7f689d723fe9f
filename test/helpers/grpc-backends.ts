/**
 * Real gRPC Who backends on loopback, an xDS client in its own process, and a retry helper: what
 * the routing tests send traffic with.
 */
import type { Etcd3 } from "etcd3";
import { freePort } from "../../runtime/lib/ports";
import { RoutingController } from "../../runtime/routing/controller";
import { startWhoBackend, type WhoBackend } from "../../runtime/routing/who";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";

export { whoClient, whoService } from "../../runtime/routing/who";

/** A running backend. */
export type Backend = WhoBackend;

/** Start a backend answering `{ backend: name }`. */
export const startBackend = (name: string): Promise<Backend> => startWhoBackend(name);

/** Retry `probe` until it returns `expected` (or time runs out); returns the last value seen. */
export async function eventually<T>(
  probe: () => Promise<T>,
  expected: T,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  let lastError: unknown;
  for (;;) {
    try {
      last = await probe();
      if (last === expected) return last;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      if (last !== undefined) return last;
      throw lastError instanceof Error ? lastError : new Error(String(lastError));
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** An xDS client in its own process (see `xds-client-process.ts`), bootstrapped at `xdsAddress`. */
export interface XdsClientProcess {
  who(target: string, headers?: Record<string, string>): Promise<string>;
  close(): Promise<void>;
}

/** Start a `@grpc/grpc-js-xds` client process whose bootstrap points at `xdsAddress`. */
export function startXdsClientProcess(
  xdsAddress: string,
  nodeId = "test-client",
): XdsClientProcess {
  const bootstrap = {
    xds_servers: [
      {
        server_uri: xdsAddress,
        channel_creds: [{ type: "insecure" }],
        server_features: ["xds_v3"],
      },
    ],
    node: { id: nodeId, locality: {} },
  };
  const child = spawn(
    process.execPath,
    ["--import", "tsx", join(__dirname, "xds-client-process.ts")],
    {
      env: { ...process.env, GRPC_XDS_BOOTSTRAP_CONFIG: JSON.stringify(bootstrap) },
      stdio: ["pipe", "pipe", "inherit"],
    },
  );
  const pending = new Map<number, { resolve: (b: string) => void; reject: (e: Error) => void }>();
  let next = 0;
  createInterface({ input: child.stdout }).on("line", (line) => {
    const answer = JSON.parse(line) as { id: number; backend?: string; error?: string };
    const waiter = pending.get(answer.id);
    pending.delete(answer.id);
    if (answer.error !== undefined) waiter?.reject(new Error(answer.error));
    else waiter?.resolve(answer.backend ?? "");
  });
  child.on("exit", () => {
    for (const w of pending.values()) w.reject(new Error("xDS client process exited"));
    pending.clear();
  });
  return {
    who: (target, headers = {}) =>
      new Promise((resolve, reject) => {
        const id = ++next;
        pending.set(id, { resolve, reject });
        child.stdin.write(`${JSON.stringify({ id, target, headers })}\n`);
      }),
    close: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGKILL");
      await exited;
    },
  };
}

/**
 * A routing controller replica on `etcd`, with one baseline service ("api", a real backend
 * answering "baseline"), registered as `routers/<name>` with `version`; closed at teardown.
 */
export async function routingReplicaFor(
  t: { teardown(fn: () => unknown): void },
  etcd: Etcd3,
  name: string,
  version = "0.2.0",
): Promise<{ address: string; controller: RoutingController }> {
  const backend = await startBackend("baseline");
  t.teardown(() => backend.close());
  const port = await freePort();
  const controller = new RoutingController({
    etcd,
    baseline: [{ name: "api", destination: backend.address }],
    xdsPort: port,
    advertise: { name, version },
  });
  t.teardown(() => controller.close());
  await controller.start();
  return { address: `127.0.0.1:${port}`, controller };
}
