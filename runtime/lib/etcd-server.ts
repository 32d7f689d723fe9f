/**
 * Starts a real, single-member etcd (Debian `etcd-server`) in a temporary directory: used by
 * `npm start` (local mode), the integration tests and the benchmarks. Nothing here is a fake.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ETCD_COMPACTION_ARGS } from "../../contract/names";
import { freePort } from "./ports";
import { Etcd3 } from "etcd3";

/** A running etcd and a connected client. */
export interface EtcdServer {
  /** Client URL, e.g. `http://127.0.0.1:23790`. */
  readonly endpoint: string;
  readonly client: Etcd3;
  /** The etcd process (tests kill it to exercise failures). */
  readonly process: ChildProcess;
  /** Its data directory and ports (to restart it on the same ones). */
  readonly dataDir: string;
  readonly clientPort: number;
  readonly peerPort: number;
  /** Stops etcd and deletes its data directory. */
  stop(): Promise<void>;
}

/** Options for {@link startEtcd}. */
export interface StartEtcdOptions {
  /** etcd binary; default `$SHARDWORKS_ETCD` or `etcd` on PATH. */
  binary?: string;
  /** Data directory; default a fresh temporary directory, removed on stop. */
  dataDir?: string;
  /** How long to wait for the first successful request; default 15 s. */
  readyTimeoutMs?: number;
  /**
   * Client and peer ports; default free ones. Fault tests restart etcd on its data dir and its
   * ports (`{ dataDir, clientPort, peerPort }` of the first), so clients reconnect to the same URL.
   */
  clientPort?: number;
  peerPort?: number;
}

/** Where and how one single-member etcd on loopback runs. */
export interface EtcdMember {
  readonly name: string;
  readonly dataDir: string;
  readonly clientPort: number;
  readonly peerPort: number;
  readonly logLevel: "error" | "warn" | "info";
}

/**
 * The command line of a single-member etcd on loopback: the one etcd configuration of the project,
 * for a child process ({@link startEtcd}) and for a testbed cluster's detached daemon
 * (`scripts/cluster/control-plane.ts`).
 */
export function etcdArgs(member: EtcdMember): string[] {
  const client = `http://127.0.0.1:${member.clientPort}`;
  const peer = `http://127.0.0.1:${member.peerPort}`;
  return [
    `--name=${member.name}`,
    `--data-dir=${member.dataDir}`,
    `--listen-client-urls=${client}`,
    `--advertise-client-urls=${client}`,
    `--listen-peer-urls=${peer}`,
    `--initial-advertise-peer-urls=${peer}`,
    `--initial-cluster=${member.name}=${peer}`,
    ...ETCD_COMPACTION_ARGS,
    `--log-level=${member.logLevel}`,
    "--logger=zap",
  ];
}

/** Start etcd on free loopback ports and wait until it answers. */
export async function startEtcd(options: StartEtcdOptions = {}): Promise<EtcdServer> {
  const binary = options.binary ?? process.env.SHARDWORKS_ETCD ?? "etcd";
  const ownDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), "shardworks-etcd-")));
  const clientPort = options.clientPort ?? (await freePort());
  const peerPort = options.peerPort ?? (await freePort());
  const endpoint = `http://127.0.0.1:${clientPort}`;
  const child = spawn(
    binary,
    etcdArgs({ name: "default", dataDir, clientPort, peerPort, logLevel: "error" }),
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const spawnError = new Promise<never>((_, reject) => {
    child.once("error", (error) =>
      reject(
        new Error(
          `could not start etcd (${binary}): ${error.message}. Install it with 'apt-get install etcd-server' or set SHARDWORKS_ETCD.`,
          { cause: error },
        ),
      ),
    );
  });
  const client = new Etcd3({ hosts: endpoint });
  const deadline = Date.now() + (options.readyTimeoutMs ?? 15_000);
  for (;;) {
    try {
      await Promise.race([client.get("/shardworks/ping").string(), spawnError]);
      break;
    } catch (error) {
      if (child.exitCode !== null || Date.now() > deadline) {
        child.kill("SIGKILL");
        client.close();
        throw new Error(
          `etcd did not become ready at ${endpoint}: ${stderr.trim() || String(error)}`,
          {
            cause: error,
          },
        );
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    endpoint,
    client,
    process: child,
    dataDir,
    clientPort,
    peerPort,
    async stop() {
      client.close();
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      }
      if (ownDir) await rm(dataDir, { recursive: true, force: true });
    },
  };
}
