/**
 * A real kube-apiserver (built by the testbed scripts into ~/.cache/shardworks/tools/bin) on a
 * real etcd, on loopback ports, with one admin bearer token. No kubelet, no controllers: enough
 * to create objects and have the API server validate and admit them.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, startEtcd } from "../../../runtime/lib";

/** Where the testbed puts kube-apiserver, unless `SHARDWORKS_KUBE_APISERVER` says otherwise. */
export function kubeApiserverBinary(): string {
  return (
    process.env["SHARDWORKS_KUBE_APISERVER"] ??
    join(homedir(), ".cache/shardworks/tools/bin/kube-apiserver")
  );
}

/** A response of the API server. */
export interface ApiResponse {
  status: number;
  body: Record<string, unknown>;
  /** `Warning` headers (Pod Security, deprecations). */
  warnings: string[];
}

/** A running API server. */
export interface KubeApiserver {
  readonly url: string;
  /** A kubeconfig (JSON) for the admin, skipping TLS verification of the self-signed server. */
  readonly kubeconfig: string;
  /** Send a request as the admin. */
  call(method: string, path: string, body?: unknown): Promise<ApiResponse>;
  stop(): Promise<void>;
}

/** Options of {@link startKubeApiserver}. */
export interface StartKubeApiserverOptions {
  /**
   * Also run kube-controller-manager's namespace and garbage-collector controllers, so deleted
   * namespaces are emptied and go away (Pulumi waits for that on destroy). Default false.
   */
  controllers?: boolean;
}

/** Start etcd and kube-apiserver; resolves once `/readyz` answers 200. */
export async function startKubeApiserver(
  options: StartKubeApiserverOptions = {},
): Promise<KubeApiserver> {
  const dir = mkdtempSync(join(tmpdir(), "shardworks-apiserver-"));
  const etcd = await startEtcd();
  const token = randomBytes(24).toString("hex");
  writeFileSync(join(dir, "tokens.csv"), `${token},admin,admin,"system:masters"\n`);
  const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  writeFileSync(join(dir, "sa.pub"), publicKey.export({ type: "spki", format: "pem" }));
  writeFileSync(join(dir, "sa.key"), privateKey.export({ type: "pkcs8", format: "pem" }));
  const port = await freePort();
  const child = spawn(
    kubeApiserverBinary(),
    [
      `--etcd-servers=${etcd.endpoint}`,
      "--bind-address=127.0.0.1",
      "--advertise-address=127.0.0.1",
      `--secure-port=${port}`,
      // No TLS files: the API server writes a self-signed serving certificate here.
      `--cert-dir=${dir}`,
      `--token-auth-file=${join(dir, "tokens.csv")}`,
      "--authorization-mode=RBAC",
      "--allow-privileged=true",
      "--anonymous-auth=false",
      "--service-account-issuer=https://kubernetes.default.svc",
      `--service-account-key-file=${join(dir, "sa.pub")}`,
      `--service-account-signing-key-file=${join(dir, "sa.key")}`,
      "--service-cluster-ip-range=10.0.0.0/24",
      "--enable-priority-and-fairness=false",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const url = `https://127.0.0.1:${port}`;
  const call = (method: string, path: string, body?: unknown) =>
    new Promise<ApiResponse>((resolve, reject) => {
      const req = request(
        `${url}${path}`,
        {
          method,
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          // The server is this test's own loopback process with a certificate it just made.
          rejectUnauthorized: false,
        },
        (res) => {
          let text = "";
          res.on("data", (chunk: Buffer) => (text += chunk.toString()));
          res.on("end", () => {
            const warning = res.headers["warning"];
            let parsed: Record<string, unknown>;
            try {
              parsed = JSON.parse(text) as Record<string, unknown>;
            } catch {
              parsed = { text };
            }
            resolve({
              status: res.statusCode ?? 0,
              body: parsed,
              warnings: warning === undefined ? [] : String(warning).split(/,(?=\s*\d{3} )/),
            });
          });
        },
      );
      req.on("error", reject);
      if (body !== undefined) req.write(JSON.stringify(body));
      req.end();
    });
  const processes: ChildProcess[] = [child];
  const stop = async () => {
    for (const extra of processes.slice(1)) if (extra.exitCode === null) extra.kill("SIGKILL");
    if (child.exitCode === null) {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (child.exitCode === null) child.kill("SIGKILL");
    }
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (child.exitCode !== null) {
      await stop();
      throw new Error(`kube-apiserver exited (${child.exitCode}): ${stderr.trim()}`);
    }
    try {
      if ((await call("GET", "/readyz")).status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`kube-apiserver did not become ready at ${url}: ${stderr.trim()}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  const kubeconfig = JSON.stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "test", cluster: { server: url, "insecure-skip-tls-verify": true } }],
    users: [{ name: "admin", user: { token } }],
    contexts: [{ name: "test", context: { cluster: "test", user: "admin" } }],
    "current-context": "test",
  });
  if (options.controllers) {
    const kubeconfigPath = join(dir, "kubeconfig");
    writeFileSync(kubeconfigPath, kubeconfig);
    const controllers = spawn(
      join(kubeApiserverBinary(), "..", "kube-controller-manager"),
      [
        `--kubeconfig=${kubeconfigPath}`,
        "--controllers=namespace,garbagecollector",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        `--secure-port=${await freePort()}`,
        `--cert-dir=${dir}`,
      ],
      { stdio: "ignore" },
    );
    processes.push(controllers);
  }
  return { url, kubeconfig, call, stop };
}

/** Whether the binary is there. */
export function haveKubeApiserver(): boolean {
  return existsSync(kubeApiserverBinary());
}
