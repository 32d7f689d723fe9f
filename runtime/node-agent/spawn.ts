/**
 * Start a node agent as its own process (`tsx runtime/node-agent/main.ts`) and wait for its
 * ready line. Used by `npm start`, the local node actuator and the tests that kill agents.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { Env } from "../../contract/names";

/** What to start. */
export interface SpawnNodeAgentOptions {
  name: string;
  etcdEndpoints: readonly string[];
  /** Default "auto" (the best usable driver). */
  driver?: string;
  cpuMillis?: number;
  memoryMiB?: number;
  leaseTtlSeconds?: number;
  dataDir?: string;
  labels?: Record<string, string>;
  /** Extra environment for the agent. */
  env?: Record<string, string>;
  /** How long to wait for the ready line; default 60 s. */
  readyTimeoutMs?: number;
}

/** A node agent process. */
export interface SpawnedNodeAgent {
  readonly name: string;
  readonly address: string;
  readonly driver: string;
  /** The driver's notes about this host (e.g. "KVM unusable here: using TCG"). */
  readonly notes: readonly string[];
  readonly process: ChildProcess;
  /** SIGTERM, then SIGKILL after `graceMs` (default 5 s); resolves when it has exited. */
  stop(graceMs?: number): Promise<void>;
}

const MAIN = join(__dirname, "main.ts");

/** Spawn an agent process and resolve once it has registered. */
export async function spawnNodeAgent(options: SpawnNodeAgentOptions): Promise<SpawnedNodeAgent> {
  const args = [
    "--import=tsx",
    MAIN,
    "--name",
    options.name,
    "--etcd",
    options.etcdEndpoints.join(","),
    "--driver",
    options.driver ?? "auto",
    "--cpu",
    String(options.cpuMillis ?? 4000),
    "--memory",
    String(options.memoryMiB ?? 4096),
    "--lease-ttl",
    String(options.leaseTtlSeconds ?? 10),
    ...(options.dataDir ? ["--data-dir", options.dataDir] : []),
    ...Object.entries(options.labels ?? {}).flatMap(([k, v]) => ["--label", `${k}=${v}`]),
  ];
  const child = spawn(process.execPath, args, {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, [Env.service]: `node-agent-${options.name}`, ...options.env },
  });
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const stop = async (graceMs = 5000): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
    await exited;
    clearTimeout(timer);
  };
  const ready = await new Promise<{ address: string; driver: string; notes: string[] }>(
    (resolve, reject) => {
      const lines = createInterface({ input: child.stdout });
      const timer = setTimeout(() => {
        reject(new Error(`node agent ${options.name} was not ready in time: ${stderr.trim()}`));
      }, options.readyTimeoutMs ?? 60_000);
      lines.on("line", (line) => {
        try {
          const msg = JSON.parse(line) as {
            ready?: boolean;
            address?: string;
            driver?: string;
            notes?: string[];
          };
          if (msg.ready && msg.address && msg.driver) {
            clearTimeout(timer);
            resolve({ address: msg.address, driver: msg.driver, notes: msg.notes ?? [] });
          }
        } catch {
          // a log line, not the ready line
        }
      });
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        reject(
          new Error(
            `node agent ${options.name} exited (${code ?? signal}) before it was ready: ${stderr.trim()}`,
          ),
        );
      });
    },
  ).catch(async (error: unknown) => {
    await stop(1000);
    throw error;
  });
  return { name: options.name, ...ready, process: child, stop };
}
