/**
 * The testbed's image registry: Debian's `docker-registry` (the CNCF distribution registry 2.8),
 * one per machine, on 127.0.0.1:5055 (override with `SHARDWORKS_REGISTRY_PORT`), plain HTTP, no
 * auth, its blobs under `~/.cache/shardworks/registry`. Every cluster's containerd pulls
 * `localhost:5055/shardworks/<name>@sha256:<digest>` from it through a mirror.
 *
 * `ensureRegistry()` is idempotent: when something already answers `/v2/` as a registry, it is
 * used as it is; otherwise the registry is started detached (it outlives the caller, like a kind
 * node), with a pid file, and `stopRegistry()` stops it.
 *
 * `npx tsx scripts/registry.ts [up|down|status]` does the same from a shell.
 */
import { spawn } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { z } from "zod";
import { cacheRoot } from "./tools";

/** The port the registry listens on when `SHARDWORKS_REGISTRY_PORT` is not set. */
export const DEFAULT_REGISTRY_PORT = 5055;
/** The repository prefix every testbed image lives under (`localhost:5055/shardworks/<name>`). */
export const REGISTRY_PREFIX = "shardworks";

/** The registry binary from Debian's `docker-registry` package. */
const REGISTRY_BINARY = "/usr/bin/docker-registry";

const portSchema = z.coerce
  .number({ error: "must be a number" })
  .int("must be a whole number")
  .min(1024, "must be at least 1024 (an unprivileged port)")
  .max(65535, "must be at most 65535");

/** A running testbed registry, as `ensureRegistry()` returns it. */
export interface Registry {
  /** What image references start with: `localhost:<port>` (containerd and skopeo name it so). */
  readonly host: `localhost:${number}`;
  /** Its HTTP base URL, on loopback: `http://127.0.0.1:<port>`. */
  readonly url: string;
  readonly port: number;
  /** `host/prefix`, what testbed images are named under: `localhost:5055/shardworks`. */
  readonly repository: string;
  /** Where its blobs are stored. */
  readonly storage: string;
  /** Pid of the registry process when this testbed started it; undefined when it found one running. */
  readonly pid: number | undefined;
}

/**
 * The registry's port: `SHARDWORKS_REGISTRY_PORT` or 5055. Throws a message naming the variable
 * and the fix when it is not a usable port.
 */
export function registryPort(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.SHARDWORKS_REGISTRY_PORT;
  if (raw === undefined || raw === "") return DEFAULT_REGISTRY_PORT;
  const parsed = portSchema.safeParse(raw);
  if (!parsed.success) {
    throw new Error(
      `SHARDWORKS_REGISTRY_PORT=${JSON.stringify(raw)} ${parsed.error.issues[0]?.message ?? "is invalid"}; set it to a free TCP port such as ${DEFAULT_REGISTRY_PORT}, or unset it`,
    );
  }
  return parsed.data;
}

/** The registry's state directory: config, pid file, log and the blob store. */
export function registryDir(): string {
  return join(cacheRoot(), "registry");
}

function say(message: string): void {
  process.stderr.write(`registry: ${message}\n`);
}

/** What answers `GET /v2/` on the port: the registry, something else, or nothing. */
async function probe(url: string): Promise<"registry" | "other" | "none"> {
  try {
    // Generous: on a loaded machine a healthy registry can take seconds to answer.
    const response = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(5000) });
    await response.body?.cancel();
    // A distribution registry names its API version in this header, auth or not.
    return response.headers.get("docker-distribution-api-version") === "registry/2.0"
      ? "registry"
      : "other";
  } catch (error) {
    // Refused means nothing listens; a timeout means something does, but is slow or stuck.
    const code = (error as { cause?: { code?: string } }).cause?.code;
    return code === "ECONNREFUSED" ? "none" : "other";
  }
}

/** Whether `pid` runs and is not a zombie (an exited child not yet reaped still answers kill 0). */
function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

function configOf(port: number, storage: string): string {
  // Only loopback: the registry has no auth, and containerd reaches it through localhost.
  return [
    "version: 0.1",
    "log:",
    "  level: warn",
    "  accesslog:",
    "    disabled: true",
    "  fields:",
    "    service: shardworks-registry",
    "storage:",
    "  filesystem:",
    `    rootdirectory: ${storage}`,
    "  delete:",
    "    enabled: true",
    "  cache:",
    "    blobdescriptor: inmemory",
    "http:",
    `  addr: 127.0.0.1:${port}`,
    // Fixed: it only signs upload state, and a restart must not break an upload in flight.
    "  secret: shardworks-testbed-loopback-only",
    "  headers:",
    "    X-Content-Type-Options: [nosniff]",
    "",
  ].join("\n");
}

function pidFile(): string {
  return join(registryDir(), "registry.pid");
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The pid in the pid file, when that process still runs the registry. */
function recordedPid(): number | undefined {
  if (!existsSync(pidFile())) return undefined;
  const pid = Number(readFileSync(pidFile(), "utf8").trim());
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return undefined;
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    return cmdline.includes("docker-registry") ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The testbed registry, started if nothing answers yet. Safe to call from many processes at once:
 * a second registry that loses the race for the port exits, and the caller then finds the first.
 */
export function ensureRegistry(): Promise<Registry> {
  // One start per process at a time: concurrent callers share it.
  inFlight ??= startOrFind().finally(() => (inFlight = undefined));
  return inFlight;
}
let inFlight: Promise<Registry> | undefined;

async function startOrFind(): Promise<Registry> {
  const port = registryPort();
  const url = `http://127.0.0.1:${port}`;
  const dir = registryDir();
  const storage = join(dir, "data");
  const result = (pid: number | undefined): Registry => ({
    host: `localhost:${port}`,
    url,
    port,
    repository: `localhost:${port}/${REGISTRY_PREFIX}`,
    storage,
    pid,
  });
  const state = await probe(url);
  if (state === "registry") return result(recordedPid());
  if (state === "other") {
    throw new Error(
      `127.0.0.1:${port} is taken by something that does not answer as an image registry (GET /v2/); stop what listens there or set SHARDWORKS_REGISTRY_PORT to a free port`,
    );
  }
  if (!existsSync(REGISTRY_BINARY)) {
    throw new Error(
      `${REGISTRY_BINARY} is missing; run \`bash scripts/install-debian-packages.sh\` (Debian package docker-registry)`,
    );
  }
  mkdirSync(storage, { recursive: true });
  const config = join(dir, `config-${port}.yml`);
  writeFileSync(config, configOf(port, storage));
  const logPath = join(dir, "registry.log");
  const log = openSync(logPath, "a");
  say(`starting docker-registry on 127.0.0.1:${port} (storage ${storage}, log ${logPath})`);
  const child = spawn(REGISTRY_BINARY, ["serve", config], {
    detached: true,
    stdio: ["ignore", log, log],
  });
  closeSync(log);
  let exited = false;
  child.once("exit", () => (exited = true));
  child.unref();
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${REGISTRY_BINARY}; see ${logPath}`);
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    const now = await probe(url);
    if (now === "registry") {
      // A second registry that lost the port exits at once; give its exit a moment to show.
      await sleep(300);
      if (exited || !isRunning(pid)) return result(recordedPid()); // another one has the port
      writeFileSync(pidFile(), `${pid}\n`);
      say(`ready: ${url}`);
      return result(pid);
    }
    if (exited && now === "none") {
      const tail = readFileSync(logPath, "utf8").trim().split("\n").slice(-5).join("\n");
      throw new Error(`docker-registry exited before answering on ${url}:\n${tail}`);
    }
    await sleep(100);
  }
  process.kill(pid, "SIGTERM");
  throw new Error(`docker-registry did not answer ${url}/v2/ within 15 s; see ${logPath}`);
}

/**
 * Stops the registry this testbed started (the one in the pid file), waiting until it is gone.
 * Images stay in the store. Returns whether a registry was stopped.
 */
export async function stopRegistry(): Promise<boolean> {
  const pid = recordedPid();
  if (pid === undefined) {
    await rm(pidFile(), { force: true });
    return false;
  }
  process.kill(pid, "SIGTERM");
  for (let i = 0; i < 100 && isAlive(pid); i++) await sleep(50);
  if (isAlive(pid)) process.kill(pid, "SIGKILL");
  await rm(pidFile(), { force: true });
  say(`stopped (pid ${pid})`);
  return true;
}

async function cli(argv: readonly string[]): Promise<void> {
  const command = z
    .enum(["up", "down", "status"], {
      error: (issue) =>
        `unknown command ${JSON.stringify(issue.input)}; use one of: up, down, status`,
    })
    .parse(argv[0] ?? "up");
  if (command === "down") {
    if (!(await stopRegistry())) say("no registry started by the testbed is running");
    return;
  }
  if (command === "status") {
    const port = registryPort();
    const state = await probe(`http://127.0.0.1:${port}`);
    process.stdout.write(
      `${state === "registry" ? "running" : "not running"}: 127.0.0.1:${port} (pid ${String(recordedPid() ?? "-")})\n`,
    );
    return;
  }
  const registry = await ensureRegistry();
  process.stdout.write(`${registry.url} (images: ${registry.repository}/<name>)\n`);
}

if (require.main === module) {
  cli(process.argv.slice(2)).catch((error: unknown) => {
    const message =
      error instanceof z.ZodError
        ? (error.issues[0]?.message ?? error.message)
        : error instanceof Error
          ? error.message
          : String(error);
    say(`error: ${message}`);
    process.exit(1);
  });
}
