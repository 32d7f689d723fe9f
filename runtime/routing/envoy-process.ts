/**
 * A real Envoy process on this machine, bootstrapped with the project's own `envoyBootstrap()`:
 * the local gateway of `npm start`, and what the routing tests and the gateway bench send traffic
 * through. Admin on loopback (a free port Envoy picks), ready when `/ready` answers 200 and the
 * `ingress` listener (from LDS) is bound; `stop()` always ends the process and removes its files.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { envoyBootstrap, GATEWAY_NODE_ID } from "../../contract";
import { INGRESS_NAME } from "./translate";

/** What {@link startEnvoy} needs. */
export interface StartEnvoyOptions {
  /** Path of the Envoy binary (`ensureEnvoy()` of `scripts/envoy.ts`). */
  binary: string;
  /** Host and port of the routing controller's ADS server. */
  adsHost?: string;
  adsPort: number;
  /** Worker threads; default 1 (a test or the local gateway needs no more). */
  concurrency?: number;
  /** Envoy's log level; default `warn`. */
  logLevel?: string;
  /** Wait at most this long for readiness; default 30 s. */
  readyTimeoutMs?: number;
  /** Also wait for the `ingress` listener; default true. */
  waitForListener?: boolean;
  /** ADS flavour of the bootstrap; default `delta`. */
  adsProtocol?: "delta" | "sotw";
}

/** A running Envoy. */
export interface EnvoyProcess {
  readonly pid: number;
  /** `http://127.0.0.1:<port>` of the admin interface. */
  readonly adminUrl: string;
  /** GET an admin path (e.g. `/stats?filter=…`), as text. */
  admin(path: string): Promise<string>;
  /** The port the `ingress` listener is bound to (once LDS delivered it). */
  ingressPort(): Promise<number | undefined>;
  /** The last lines Envoy logged (for error messages). */
  log(): string;
  /** SIGTERM, then SIGKILL after 5 s; removes the work directory. Idempotent. */
  stop(): Promise<void>;
}

/** Start Envoy and wait until it is ready; throws (with Envoy's log) if it is not in time. */
export async function startEnvoy(options: StartEnvoyOptions): Promise<EnvoyProcess> {
  const work = await mkdtemp(join(tmpdir(), "shardworks-envoy-"));
  const config = join(work, "envoy.json");
  const adminAddressFile = join(work, "admin-address");
  await writeFile(
    config,
    JSON.stringify(
      envoyBootstrap({
        nodeId: GATEWAY_NODE_ID,
        cluster: GATEWAY_NODE_ID,
        adsHost: options.adsHost ?? "127.0.0.1",
        adsPort: options.adsPort,
        adminPort: 0,
        ...(options.adsProtocol === undefined ? {} : { adsProtocol: options.adsProtocol }),
      }),
    ),
  );
  const child: ChildProcess = spawn(
    options.binary,
    [
      "-c",
      config,
      "--log-level",
      options.logLevel ?? "warn",
      "--disable-hot-restart",
      "--concurrency",
      String(options.concurrency ?? 1),
      "--admin-address-path",
      adminAddressFile,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString()).slice(-20_000);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const killed = await Promise.race([exited.then(() => true), sleep(5000).then(() => false)]);
        if (!killed) {
          child.kill("SIGKILL");
          await exited;
        }
      }
      await rm(work, { recursive: true, force: true });
    })());

  try {
    const deadline = Date.now() + (options.readyTimeoutMs ?? 30_000);
    const tail = (): string => output.trim().split("\n").slice(-15).join("\n");
    const check = (): void => {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`envoy exited (${child.exitCode ?? child.signalCode}):\n${tail()}`);
      }
      if (Date.now() > deadline) throw new Error(`envoy not ready in time:\n${tail()}`);
    };
    let adminUrl = "";
    while (!adminUrl) {
      check();
      const address = await readFile(adminAddressFile, "utf8").catch(() => "");
      if (address.trim()) adminUrl = `http://${address.trim()}`;
      else await sleep(50);
    }
    const admin = async (path: string): Promise<string> => {
      const response = await fetch(`${adminUrl}${path}`, { signal: AbortSignal.timeout(5000) });
      return response.text();
    };
    const ingressPort = async (): Promise<number | undefined> => {
      const listeners = JSON.parse(await admin("/listeners?format=json")) as {
        listener_statuses?: {
          name: string;
          local_address?: { socket_address?: { port_value?: number } };
        }[];
      };
      const ingress = listeners.listener_statuses?.find((l) => l.name === INGRESS_NAME);
      return ingress?.local_address?.socket_address?.port_value;
    };
    for (;;) {
      check();
      const ready = await fetch(`${adminUrl}/ready`, { signal: AbortSignal.timeout(2000) })
        .then((r) => r.status === 200)
        .catch(() => false);
      if (ready && (options.waitForListener === false || (await ingressPort()) !== undefined)) {
        break;
      }
      await sleep(50);
    }
    return {
      pid: child.pid ?? 0,
      adminUrl,
      admin,
      ingressPort,
      log: () => output,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
