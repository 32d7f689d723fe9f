/**
 * Local Kubernetes control planes for the testbed (`npm run cluster -- up|down|status [name…]`).
 *
 * Per named cluster: a real etcd (Debian `etcd-server`), `kube-apiserver` (token auth, RBAC) and
 * `kube-controller-manager` (only the controllers an API-only cluster needs: namespace deletion,
 * garbage collection, service accounts) on their own loopback ports, with self-made certificates.
 * State lives in `~/.cache/shardworks/clusters/<name>/` (override the root with `SHARDWORKS_CACHE`):
 * `kubeconfig` (admin, group `system:masters`), `kubeconfig-<user>` per test user, `state.json`
 * (pids and ports), `logs/`. There is no kubelet: pods are never run.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, openSync, closeSync, readFileSync } from "node:fs";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { request } from "node:https";
import { join } from "node:path";
import { Command } from "commander";
import { stringify } from "yaml";
import { z } from "zod";
import { freePort } from "../runtime/lib/ports";
import { makeCertificate, openssl } from "./pki";
import { cacheRoot, ensureTools, toolsBinDir } from "./tools";

/** Cluster names become directory names and kubeconfig context names. */
export const ClusterName = z
  .string()
  .regex(
    /^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$/,
    "a cluster name is 1-40 lowercase letters, digits or '-', e.g. 'local'",
  );

const UserName = z
  .string()
  .regex(/^[a-z][a-z0-9-]{0,30}$/, "a user name is lowercase letters, digits or '-'");

const State = z.object({
  name: ClusterName,
  server: z.string().url(),
  etcdEndpoint: z.string().url(),
  pids: z.object({
    etcd: z.number().int(),
    apiserver: z.number().int(),
    controllerManager: z.number().int(),
  }),
  startedAt: z.string(),
});
type State = z.infer<typeof State>;

const Tokens = z.object({ admin: z.string(), users: z.record(z.string(), z.string()) });

export interface StartClusterOptions {
  /** Token users created besides the admin (no groups, so no rights until RBAC binds them). */
  users?: readonly string[];
  /** Start kube-controller-manager (namespace finalization, GC); default true. */
  controllerManager?: boolean;
  /** Progress lines; default stderr. */
  log?: (line: string) => void;
  /** How long to wait for /readyz; default 120 s. */
  readyTimeoutMs?: number;
}

export interface Cluster {
  readonly name: string;
  readonly dir: string;
  /** `https://127.0.0.1:<port>` */
  readonly server: string;
  readonly etcdEndpoint: string;
  readonly caCert: string;
  /** Admin kubeconfig (user `shardworks-admin` in `system:masters`) and its path. */
  readonly kubeconfig: string;
  readonly kubeconfigPath: string;
  readonly adminToken: string;
  /** Bearer tokens of the test users, by name. */
  readonly userTokens: Readonly<Record<string, string>>;
  /** Path of a kubeconfig for one test user. */
  kubeconfigPathFor(user: string): string;
}

export const DEFAULT_USERS = ["alice", "bob", "carol"] as const;

export function clusterDir(name: string): string {
  const parsed = ClusterName.safeParse(name);
  if (!parsed.success) {
    throw new Error(`cluster name '${name}': ${parsed.error.issues[0]?.message ?? "invalid"}`);
  }
  return join(cacheRoot(), "clusters", parsed.data);
}

function alive(pid: number, dir: string): boolean {
  // The pid must still be ours: its command line names this cluster's directory.
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    if (cmdline.includes(dir)) return true;
    if (cmdline !== "") return false; // the pid belongs to another process now
    // An empty command line: the process is exec'ing (`nice` → the daemon) or is a zombie.
    return !/^\d+ \(.*\) [ZX] /.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

async function readState(dir: string): Promise<State | undefined> {
  const file = join(dir, "state.json");
  if (!existsSync(file)) return undefined;
  const parsed = State.safeParse(JSON.parse(await readFile(file, "utf8")));
  return parsed.success ? parsed.data : undefined;
}

/** CA, API server serving cert and service-account key pair, made once per cluster. */
function ensurePki(pki: string): void {
  if (existsSync(join(pki, "sa.pub"))) return;
  const days = 3650;
  makeCertificate(pki, {
    key: "ca.key",
    cert: "ca.crt",
    days,
    subject: "/CN=shardworks-testbed-ca",
    extensions: ["basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign"],
  });
  makeCertificate(pki, {
    key: "apiserver.key",
    cert: "apiserver.crt",
    days,
    ca: { cert: "ca.crt", key: "ca.key" },
    subject: "/CN=kube-apiserver",
    extensions: [
      "subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc",
      "basicConstraints=critical,CA:FALSE",
      "extendedKeyUsage=serverAuth",
    ],
  });
  openssl(["genrsa", "-out", "sa.key", "2048"], pki);
  openssl(["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"], pki);
}

async function ensureTokens(
  dir: string,
  users: readonly string[],
): Promise<z.infer<typeof Tokens>> {
  const file = join(dir, "tokens.json");
  const token = (): string => randomBytes(24).toString("hex");
  const tokens = existsSync(file)
    ? Tokens.parse(JSON.parse(await readFile(file, "utf8")))
    : { admin: token(), users: {} };
  for (const user of users) tokens.users[UserName.parse(user)] ??= token();
  await writeFile(file, JSON.stringify(tokens, null, 2), { mode: 0o600 });
  // kube-apiserver --token-auth-file: token,user,uid,"group1,group2"
  const csv = [
    `${tokens.admin},shardworks-admin,shardworks-admin,"system:masters"`,
    ...Object.entries(tokens.users).map(([user, t]) => `${t},${user},${user}`),
  ].join("\n");
  await writeFile(join(dir, "tokens.csv"), `${csv}\n`, { mode: 0o600 });
  return tokens;
}

function kubeconfigYaml(
  name: string,
  server: string,
  caCert: string,
  user: string,
  token: string,
): string {
  return stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [
      {
        name,
        cluster: { server, "certificate-authority-data": Buffer.from(caCert).toString("base64") },
      },
    ],
    users: [{ name: user, user: { token } }],
    contexts: [{ name, context: { cluster: name, user } }],
    "current-context": name,
  });
}

/** Start a daemon detached from us (it outlives `npm run cluster -- up`), output to a log file. */
function daemon(binary: string, args: string[], log: string): number {
  const fd = openSync(log, "a");
  const child = spawn("nice", ["-n", "5", binary, ...args], {
    detached: true,
    stdio: ["ignore", fd, fd],
  });
  closeSync(fd);
  child.unref();
  if (child.pid === undefined) throw new Error(`could not start ${binary}`);
  return child.pid;
}

function get(
  url: string,
  caCert: string,
  token: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolveGet, reject) => {
    const req = request(
      url,
      { ca: caCert, headers: { authorization: `Bearer ${token}` }, timeout: 5000 },
      (res) => {
        let body = "";
        res.on("data", (chunk: Buffer) => (body += chunk.toString()));
        res.on("end", () => resolveGet({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end();
  });
}

/** A response of {@link clusterRequest}. */
export interface ClusterResponse {
  status: number;
  /** The JSON body (`{ text }` when it is not JSON). */
  body: Record<string, unknown>;
  /** `Warning` headers (Pod Security admission, deprecations). */
  warnings: string[];
}

/** Send one request to a cluster's API server as its admin (tests use it to see `Warning`s). */
export function clusterRequest(
  cluster: Pick<Cluster, "server" | "caCert" | "adminToken">,
  method: string,
  path: string,
  body?: unknown,
): Promise<ClusterResponse> {
  return new Promise((resolveRequest, reject) => {
    const req = request(
      `${cluster.server}${path}`,
      {
        method,
        ca: cluster.caCert,
        headers: {
          authorization: `Bearer ${cluster.adminToken}`,
          "content-type": "application/json",
        },
      },
      (res) => {
        let text = "";
        res.on("data", (chunk: Buffer) => (text += chunk.toString()));
        res.on("end", () => {
          let parsed: Record<string, unknown>;
          try {
            parsed = JSON.parse(text) as Record<string, unknown>;
          } catch {
            parsed = { text };
          }
          const warning = res.headers["warning"];
          resolveRequest({
            status: res.statusCode ?? 0,
            body: parsed,
            // Several warnings arrive as one comma-joined header: `299 - "a", 299 - "b"`.
            warnings: warning === undefined ? [] : String(warning).split(/,(?=\s*\d{3} )/),
          });
        });
      },
    );
    req.on("error", reject);
    if (body !== undefined) req.write(JSON.stringify(body));
    req.end();
  });
}

async function tail(file: string): Promise<string> {
  return existsSync(file)
    ? (await readFile(file, "utf8")).trimEnd().split("\n").slice(-12).join("\n")
    : "";
}

/** Start (or find running) cluster `name`; resolves once `/readyz` answers ok. */
export async function startCluster(
  name: string,
  options: StartClusterOptions = {},
): Promise<Cluster> {
  const log = options.log ?? ((line: string) => process.stderr.write(`cluster ${name}: ${line}\n`));
  const dir = clusterDir(name);
  const pki = join(dir, "pki");
  const logs = join(dir, "logs");
  await mkdir(pki, { recursive: true });
  await mkdir(logs, { recursive: true });
  ensurePki(pki);
  const tokens = await ensureTokens(dir, options.users ?? DEFAULT_USERS);
  const caCert = await readFile(join(pki, "ca.crt"), "utf8");
  const bin = toolsBinDir();

  let state = await readState(dir);
  const running =
    state !== undefined && alive(state.pids.etcd, dir) && alive(state.pids.apiserver, dir);
  if (state !== undefined && running) {
    log(`already running at ${state.server}`);
  } else {
    if (state !== undefined) await stopCluster(name, { log }); // half-dead: clean it up first
    if (!existsSync(join(bin, "kube-apiserver"))) await ensureTools();
    const started = Date.now();
    const [etcdPort, peerPort, apiPort] = [await freePort(), await freePort(), await freePort()];
    const etcdEndpoint = `http://127.0.0.1:${etcdPort}`;
    const server = `https://127.0.0.1:${apiPort}`;
    const etcdData = join(dir, "etcd-data");
    const etcd = daemon(
      process.env.SHARDWORKS_ETCD ?? "etcd",
      [
        `--name=${name}`,
        `--data-dir=${etcdData}`,
        `--listen-client-urls=${etcdEndpoint}`,
        `--advertise-client-urls=${etcdEndpoint}`,
        `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-cluster=${name}=http://127.0.0.1:${peerPort}`,
        "--log-level=warn",
        "--logger=zap",
      ],
      join(logs, "etcd.log"),
    );
    log(`etcd on ${etcdEndpoint} (pid ${etcd})`);
    const apiserver = daemon(
      join(bin, "kube-apiserver"),
      [
        `--etcd-servers=${etcdEndpoint}`,
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        `--secure-port=${apiPort}`,
        `--cert-dir=${pki}`,
        `--tls-cert-file=${join(pki, "apiserver.crt")}`,
        `--tls-private-key-file=${join(pki, "apiserver.key")}`,
        `--client-ca-file=${join(pki, "ca.crt")}`,
        `--token-auth-file=${join(dir, "tokens.csv")}`,
        "--authorization-mode=RBAC",
        "--anonymous-auth=false",
        // The advertise address is loopback, which the Endpoints of the `kubernetes` Service may not
        // hold; nothing in an API-only testbed needs that Service.
        "--endpoint-reconciler-type=none",
        `--service-account-issuer=https://kubernetes.default.svc`,
        `--service-account-key-file=${join(pki, "sa.pub")}`,
        `--service-account-signing-key-file=${join(pki, "sa.key")}`,
        "--service-cluster-ip-range=10.0.0.0/24",
        "--allow-privileged=true",
        "--profiling=false",
        "--v=1",
      ],
      join(logs, "kube-apiserver.log"),
    );
    log(`kube-apiserver on ${server} (pid ${apiserver})`);
    const adminKubeconfig = join(dir, "kubeconfig");
    await writeFile(
      adminKubeconfig,
      kubeconfigYaml(name, server, caCert, "shardworks-admin", tokens.admin),
      { mode: 0o600 },
    );
    let controllerManager = -1;
    state = {
      name,
      server,
      etcdEndpoint,
      pids: { etcd, apiserver, controllerManager },
      startedAt: new Date().toISOString(),
    };
    await writeFile(join(dir, "state.json"), JSON.stringify(state, null, 2));
    const deadline = Date.now() + (options.readyTimeoutMs ?? 120_000);
    let last = "";
    for (;;) {
      if (!alive(apiserver, dir) || !alive(etcd, dir)) {
        await stopCluster(name, { log });
        const which = alive(etcd, dir) ? "kube-apiserver" : "etcd";
        throw new Error(
          `${which} exited during start-up; last log lines:\n${await tail(join(logs, `${which}.log`))}`,
        );
      }
      try {
        const res = await get(`${server}/readyz`, caCert, tokens.admin);
        if (res.status === 200) break;
        last = `${res.status} ${res.body.slice(0, 300)}`;
      } catch (error) {
        last = error instanceof Error ? error.message : String(error);
      }
      if (Date.now() > deadline) {
        await stopCluster(name, { log });
        throw new Error(
          `kube-apiserver not ready after ${options.readyTimeoutMs ?? 120_000} ms: ${last}`,
        );
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    log(`/readyz ok after ${((Date.now() - started) / 1000).toFixed(1)} s`);
    if (options.controllerManager ?? true) {
      controllerManager = daemon(
        join(bin, "kube-controller-manager"),
        [
          `--kubeconfig=${adminKubeconfig}`,
          "--leader-elect=false",
          "--secure-port=0",
          "--controllers=namespace-controller,garbage-collector-controller,serviceaccount-controller,serviceaccount-token-controller,clusterrole-aggregation-controller",
          `--service-account-private-key-file=${join(pki, "sa.key")}`,
          `--root-ca-file=${join(pki, "ca.crt")}`,
          "--use-service-account-credentials=false",
          "--v=1",
          `--cert-dir=${pki}`,
        ],
        join(logs, "kube-controller-manager.log"),
      );
      state = { ...state, pids: { ...state.pids, controllerManager } };
      await writeFile(join(dir, "state.json"), JSON.stringify(state, null, 2));
      log(`kube-controller-manager (pid ${controllerManager})`);
    }
  }
  for (const [user, token] of Object.entries(tokens.users)) {
    await writeFile(
      join(dir, `kubeconfig-${user}`),
      kubeconfigYaml(name, state.server, caCert, user, token),
      { mode: 0o600 },
    );
  }
  const kubeconfigPath = join(dir, "kubeconfig");
  return {
    name,
    dir,
    server: state.server,
    etcdEndpoint: state.etcdEndpoint,
    caCert,
    kubeconfig: await readFile(kubeconfigPath, "utf8"),
    kubeconfigPath,
    adminToken: tokens.admin,
    userTokens: tokens.users,
    kubeconfigPathFor: (user: string) => {
      if (tokens.users[user] === undefined)
        throw new Error(
          `cluster ${name} has no user '${user}'; users: ${Object.keys(tokens.users).join(", ")}`,
        );
      return join(dir, `kubeconfig-${user}`);
    },
  };
}

/** Stop everything cluster `name` runs and delete its etcd data; `purge` deletes the whole directory. */
export async function stopCluster(
  name: string,
  options: { purge?: boolean; log?: (line: string) => void } = {},
): Promise<void> {
  const log = options.log ?? ((line: string) => process.stderr.write(`cluster ${name}: ${line}\n`));
  const dir = clusterDir(name);
  const state = await readState(dir);
  if (state !== undefined) {
    // Controller manager first, etcd last, so nothing logs connection errors on the way down.
    const pids = [state.pids.controllerManager, state.pids.apiserver, state.pids.etcd].filter(
      (p) => p > 0 && alive(p, dir),
    );
    for (const pid of pids) process.kill(-pid, "SIGTERM"); // each daemon leads its own process group
    const deadline = Date.now() + 10_000;
    while (pids.some((p) => alive(p, dir)) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    for (const pid of pids.filter((p) => alive(p, dir))) process.kill(-pid, "SIGKILL");
    while (pids.some((p) => alive(p, dir))) await new Promise((r) => setTimeout(r, 50));
    log(pids.length > 0 ? `stopped (pids ${pids.join(", ")})` : "was not running");
  } else {
    log("was not running");
  }
  await rm(join(dir, "state.json"), { force: true });
  await rm(join(dir, "etcd-data"), { recursive: true, force: true });
  if (options.purge === true) await rm(dir, { recursive: true, force: true });
}

/** One line per cluster: running or not, server URL, kubeconfig. */
export async function clusterStatus(name: string): Promise<{
  name: string;
  running: boolean;
  server?: string;
  ready?: boolean;
  kubeconfig?: string;
}> {
  const dir = clusterDir(name);
  const state = await readState(dir);
  if (state === undefined || !alive(state.pids.apiserver, dir)) return { name, running: false };
  const tokens = Tokens.parse(JSON.parse(await readFile(join(dir, "tokens.json"), "utf8")));
  const caCert = await readFile(join(dir, "pki", "ca.crt"), "utf8");
  const ready = await get(`${state.server}/readyz`, caCert, tokens.admin).then(
    (r) => r.status === 200,
    () => false,
  );
  return { name, running: true, server: state.server, ready, kubeconfig: join(dir, "kubeconfig") };
}

async function listClusters(): Promise<string[]> {
  const root = join(cacheRoot(), "clusters");
  if (!existsSync(root)) return [];
  return (await readdir(root)).filter((n) => ClusterName.safeParse(n).success);
}

function names(args: string[]): string[] {
  const list = args.length > 0 ? args : ["local"];
  for (const n of list) {
    const parsed = ClusterName.safeParse(n);
    if (!parsed.success)
      throw new Error(`cluster name '${n}': ${parsed.error.issues[0]?.message ?? "invalid"}`);
  }
  return list;
}

if (require.main === module) {
  const program = new Command("cluster").description(
    "Local Kubernetes control planes for the testbed",
  );
  program
    .command("up")
    .argument("[names...]", "cluster names", [])
    .action(async (args: string[]) => {
      await ensureTools();
      for (const n of names(args)) {
        const c = await startCluster(n);
        process.stdout.write(`${n}: ${c.server}  KUBECONFIG=${c.kubeconfigPath}\n`);
      }
    });
  program
    .command("down")
    .argument("[names...]", "cluster names (default: local; 'all' for every cluster)", [])
    .option("--purge", "also delete certificates, tokens and kubeconfigs")
    .action(async (args: string[], opts: { purge?: boolean }) => {
      const list = args.length === 1 && args[0] === "all" ? await listClusters() : names(args);
      for (const n of list) await stopCluster(n, { purge: opts.purge === true });
    });
  program
    .command("status")
    .argument("[names...]", "cluster names (default: every cluster)", [])
    .action(async (args: string[]) => {
      const list = args.length > 0 ? names(args) : await listClusters();
      if (list.length === 0) process.stdout.write("no clusters\n");
      for (const n of list) {
        const s = await clusterStatus(n);
        process.stdout.write(
          s.running
            ? `${n}: running ${s.server} ready=${String(s.ready)} KUBECONFIG=${s.kubeconfig}\n`
            : `${n}: stopped\n`,
        );
      }
    });
  program.parseAsync().catch((error: unknown) => {
    process.stderr.write(`cluster: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  });
}
