/**
 * JIT access against a real kube-apiserver (RBAC authorizer, token users with no rights): the
 * `shardworks access` CLI grants, lists and revokes; the access reaper, running in this process,
 * deletes expired grants; the ClusterRoles are built from the same rules the AccessControl
 * component deploys (`components/access-rules.ts`).
 */
import test from "ava";
import * as k8s from "@kubernetes/client-node";
import { execFile } from "node:child_process";
import { type Socket, connect, createServer } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { CLUSTER_ROLE_RULES } from "../../contract/access";
import { EXPIRES_AT_ANNOTATION } from "../../contract";
import {
  type AccessReaper,
  type Grant,
  createAccessReaper,
  grantAccess,
  listGrants,
} from "../../runtime/access";
import { type Cluster, startCluster, stopCluster } from "../../scripts/cluster";
import { ensureTools } from "../../scripts/tools";
import { statusOf } from "../helpers/kube";

const run = promisify(execFile);
const CLI = join(__dirname, "..", "..", "runtime", "cli", "bin.cjs");
const name = `e2e-access-${process.pid}`;
let cluster: Cluster;
let admin: k8s.KubeConfig;
let reaper: AccessReaper;
const deletions: { name: string; lateMs: number }[] = [];

function configOf(path: string): k8s.KubeConfig {
  const config = new k8s.KubeConfig();
  config.loadFromFile(path);
  return config;
}

/** `shardworks access …` as a user runs it; never throws, returns what the user sees. */
async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(
      process.execPath,
      // The last `--kubeconfig` wins, so a test can act as a user by passing theirs.
      [CLI, "access", "--kubeconfig", cluster.kubeconfigPath, ...args],
      { env: { ...process.env, KUBECONFIG: "" }, timeout: 60_000 },
    );
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

/** `shardworks access grant`: `role` to `to` for a duration, in `shard` if given, then `extra`. */
function cliGrant(
  g: { role: string; to: string; for: string; shard?: string },
  ...extra: string[]
): ReturnType<typeof cli> {
  const shard = g.shard === undefined ? [] : ["--shard", g.shard];
  return cli("grant", "--role", g.role, "--to", g.to, "--for", g.for, ...shard, ...extra);
}

/**
 * The status `call` answers, polled until it is `want` or `withinMs` passed: the RBAC
 * authorizer's cache lags writes, and the reaper deletes on its own time.
 */
async function statusWithin(
  call: () => Promise<unknown>,
  want: number,
  withinMs = 10_000,
): Promise<number> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const status = await statusOf(call);
    if (status === want || Date.now() > deadline) return status;
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Can `user` list pods in `namespace`? Polls briefly for `want` (see {@link statusWithin}). */
async function podListStatus(user: string, namespace: string, want: number): Promise<number> {
  const core = configOf(cluster.kubeconfigPathFor(user)).makeApiClient(k8s.CoreV1Api);
  return statusWithin(() => core.listNamespacedPod({ namespace }), want);
}

/** Status of reading a RoleBinding, once (200: it is there, 404: it is gone). */
async function bindingStatus(namespace: string, binding: string): Promise<number> {
  const rbac = admin.makeApiClient(k8s.RbacAuthorizationV1Api);
  return statusOf(() => rbac.readNamespacedRoleBinding({ name: binding, namespace }));
}

/** Status of reading a RoleBinding once it is gone, or after `withinMs` if it stays. */
async function bindingStatusOnceGone(
  namespace: string,
  binding: string,
  withinMs: number,
): Promise<number> {
  const rbac = admin.makeApiClient(k8s.RbacAuthorizationV1Api);
  return statusWithin(
    () => rbac.readNamespacedRoleBinding({ name: binding, namespace }),
    404,
    withinMs,
  );
}

test.before(async (t) => {
  await ensureTools();
  cluster = await startCluster(name, { log: (line) => t.log(line) });
  admin = configOf(cluster.kubeconfigPath);
  const rbac = admin.makeApiClient(k8s.RbacAuthorizationV1Api);
  const core = admin.makeApiClient(k8s.CoreV1Api);
  // The ClusterRoles are created directly, from the rules the AccessControl component deploys
  // (the component itself is deployed through the real provider by shard.test.ts's platform
  // stack); this test is about the CLI and the reaper, not Pulumi.
  for (const [role, rules] of Object.entries(CLUSTER_ROLE_RULES)) {
    await rbac.createClusterRole({ body: { metadata: { name: role }, rules } });
  }
  for (const ns of ["shard-alice", "shard-bob"]) {
    await core.createNamespace({ body: { metadata: { name: ns } } });
  }
  reaper = createAccessReaper(admin, { retryMs: 200 });
  reaper.events.on("deleted", (d) => deletions.push({ name: d.name, lateMs: d.lateMs }));
  reaper.start();
});

test.after.always(async () => {
  await reaper?.close();
  await stopCluster(name, { purge: true, log: () => undefined });
});

test.serial(
  "a grant lets the user act in that shard only, and access ls shows its time left",
  async (t) => {
    t.is(await podListStatus("alice", "shard-alice", 403), 403, "alice has no rights before");
    const granted = await cliGrant({ role: "shard-owner", to: "alice", for: "2h", shard: "alice" });
    t.is(granted.code, 0, granted.stderr);
    t.regex(
      granted.stdout,
      /granted shardworks:shard-owner to alice in shard-alice until \S+ \(2h left\)/,
    );

    t.is(await podListStatus("alice", "shard-alice", 200), 200, "alice may list pods in her shard");
    t.is(await podListStatus("alice", "shard-bob", 403), 403, "but not in bob's");
    t.is(await podListStatus("bob", "shard-alice", 403), 403, "and bob got nothing");

    const ls = await cli("ls");
    t.is(ls.code, 0, ls.stderr);
    t.log(ls.stdout);
    t.regex(ls.stdout, /^NAME\s+WHERE\s+ROLE\s+SUBJECTS\s+EXPIRES AT\s+TIME LEFT$/m);
    t.regex(
      ls.stdout,
      /^jit-shard-owner-alice\s+shard-alice\s+shardworks:shard-owner\s+User:alice\s+\S+\s+1h59m\d+s left$/m,
    );
    const json = JSON.parse((await cli("ls", "--json")).stdout) as Grant[];
    const grant = json.find((g) => g.name === "jit-shard-owner-alice");
    t.truthy(grant);
    t.true(grant!.remainingMs! > 1.9 * 3_600_000 && grant!.remainingMs! <= 2 * 3_600_000);
  },
);

test.serial(
  "a grant past the maximum is refused with the flag and the fix, and nothing is created",
  async (t) => {
    const before = await listGrants(admin);
    const refused = await cliGrant({ role: "shard-owner", to: "bob", for: "9h", shard: "bob" });
    t.is(refused.code, 1);
    t.is(
      refused.stderr.trim(),
      "error: --for: 9h is longer than the maximum 8h; ask for at most 8h",
    );
    const zero = await cliGrant({ role: "shard-owner", to: "bob", for: "0m" });
    t.is(zero.code, 1);
    t.is(zero.stderr.trim(), "error: --for: a grant must last more than 0s; ask for e.g. 1h");
    const noShard = await cliGrant({ role: "shard-owner", to: "bob", for: "1h", shard: "nobody" });
    t.is(noShard.code, 1);
    t.is(
      noShard.stderr.trim(),
      "error: --shard: namespace shard-nobody does not exist; create the shard first (pulumi up on its stack)",
    );
    // Alice (no RBAC rights of her own) cannot grant herself anything.
    const selfService = await cliGrant(
      { role: "platform-admin", to: "alice", for: "1h" },
      "--kubeconfig",
      cluster.kubeconfigPathFor("alice"),
    );
    t.is(selfService.code, 1);
    t.regex(
      selfService.stderr,
      /^error: the API server refused: your kubeconfig's user may not manage RBAC bindings/,
    );
    t.deepEqual(
      (await listGrants(admin)).map((g) => g.name),
      before.map((g) => g.name),
    );
    t.is(await bindingStatus("shard-bob", "jit-shard-owner-bob"), 404);
    t.is(await podListStatus("bob", "shard-bob", 403), 403);
  },
);

test.serial(
  "a short grant is deleted by the running reaper soon after expiry, and the user is refused again",
  async (t) => {
    const granted = await cliGrant(
      { role: "shard-viewer", to: "bob", for: "8s", shard: "bob" },
      "--json",
    );
    t.is(granted.code, 0, granted.stderr);
    const grant = JSON.parse(granted.stdout) as Grant;
    const expiresAt = Date.parse(grant.expiresAt);
    // The CLI process takes a few seconds to start; the grant may already be close to its end.
    if (Date.now() < expiresAt - 500) {
      t.is(
        await podListStatus("bob", "shard-bob", 200),
        200,
        "bob may list pods while the grant lasts",
      );
    } else {
      t.log("grant expired before its use could be checked (slow CLI start); checking expiry only");
    }
    const gone = await bindingStatusOnceGone(
      "shard-bob",
      grant.name,
      expiresAt + 60_000 - Date.now(),
    );
    const delayMs = Date.now() - expiresAt;
    t.is(gone, 404, "the expired grant was still there 60 s after its expiry");
    const event = deletions.find((d) => d.name === grant.name);
    t.log(
      `expired grant gone ${delayMs} ms after its expiry (reaper reports ${event?.lateMs} ms late)`,
    );
    t.true(delayMs <= 60_000);
    t.truthy(event, "the reaper reported the deletion");
    t.is(await podListStatus("bob", "shard-bob", 403), 403, "bob is refused again");
  },
);

test.serial(
  "a binding with a malformed expiry is left alone (and shown as such) while a valid one is reaped",
  async (t) => {
    const rbac = admin.makeApiClient(k8s.RbacAuthorizationV1Api);
    const malformed = new Promise<string>((resolve) =>
      reaper.events.on("malformed", (m) => m.name === "carol-by-hand" && resolve(m.value)),
    );
    const binding = (name: string, expiresAt: string): k8s.V1RoleBinding => ({
      metadata: {
        name,
        labels: { "shardworks.dev/jit": "true" },
        annotations: { [EXPIRES_AT_ANNOTATION]: expiresAt },
      },
      roleRef: {
        apiGroup: "rbac.authorization.k8s.io",
        kind: "ClusterRole",
        name: "shardworks:shard-viewer",
      },
      subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name: "carol" }],
    });
    const validExpiry = new Date(Date.now() + 2_000);
    await rbac.createNamespacedRoleBinding({
      namespace: "shard-alice",
      body: binding("carol-by-hand", "next tuesday"),
    });
    await rbac.createNamespacedRoleBinding({
      namespace: "shard-alice",
      body: binding("carol-valid", validExpiry.toISOString()),
    });
    t.is(await malformed, "next tuesday");

    t.is(
      await bindingStatusOnceGone("shard-alice", "carol-valid", 60_000),
      404,
      "the valid one was reaped",
    );
    t.is(
      await bindingStatus("shard-alice", "carol-by-hand"),
      200,
      "the malformed one is still there",
    );
    t.is(await podListStatus("carol", "shard-alice", 200), 200, "and still grants what it says");
    const ls = await cli("ls");
    t.regex(ls.stdout, /^carol-by-hand\s+shard-alice\s+.*next tuesday\s+malformed expiry$/m);
  },
);

test.serial(
  "revoke ends a cluster-wide grant at once; revoking an unknown name says how to find one",
  async (t) => {
    const rbac = configOf(cluster.kubeconfigPathFor("carol")).makeApiClient(k8s.CoreV1Api);
    const listNamespaces = () => rbac.listNamespace();
    t.is(await statusOf(listNamespaces), 403);
    const granted = await cliGrant({ role: "platform-admin", to: "carol", for: "1h30m" });
    t.is(granted.code, 0, granted.stderr);
    t.regex(
      granted.stdout,
      /cluster-wide until .* \(1h30m left\)\nrevoke early: shardworks access revoke jit-platform-admin-carol/,
    );
    t.is(await statusWithin(listNamespaces, 200), 200, "carol is a platform admin for now");
    const ls = await cli("ls");
    t.regex(
      ls.stdout,
      /^jit-platform-admin-carol\s+cluster-wide\s+shardworks:platform-admin\s+User:carol\s+\S+\s+1h29m\d+s left$/m,
    );

    const revoked = await cli("revoke", "jit-platform-admin-carol");
    t.is(revoked.code, 0, revoked.stderr);
    t.is(
      revoked.stdout.trim(),
      "revoked jit-platform-admin-carol (shardworks:platform-admin cluster-wide)",
    );
    t.is(await statusWithin(listNamespaces, 403), 403, "carol is refused again");
    t.notRegex((await cli("ls")).stdout, /jit-platform-admin-carol/);

    const unknown = await cli("revoke", "jit-platform-admin-carol");
    t.is(unknown.code, 1);
    t.is(
      unknown.stderr.trim(),
      "error: no JIT grant named jit-platform-admin-carol; see shardworks access ls",
    );
  },
);

test.serial(
  "renewing a grant before it expires keeps it: the reaper follows the new expiry",
  async (t) => {
    const request = { role: "shard-viewer", to: "bob", shard: "bob" };
    const seen = deletions.length; // the earlier test reaped a grant of the same name
    const first = await grantAccess(admin, { ...request, forMs: 2_000 });
    const renewed = await grantAccess(admin, { ...request, forMs: 3_600_000 });
    t.is(renewed.name, first.name, "the same role, user and shard give the same binding");
    await new Promise((r) => setTimeout(r, Date.parse(first.expiresAt) - Date.now() + 3_000));
    const rbac = admin.makeApiClient(k8s.RbacAuthorizationV1Api);
    const binding = await rbac.readNamespacedRoleBinding({
      name: first.name,
      namespace: "shard-bob",
    });
    t.is(binding.metadata?.annotations?.[EXPIRES_AT_ANNOTATION], renewed.expiresAt);
    t.false(
      deletions.slice(seen).some((d) => d.name === first.name),
      "the reaper did not delete it at the first expiry",
    );
    t.is(await podListStatus("bob", "shard-bob", 200), 200, "bob still has the renewed grant");
    t.deepEqual(
      reaper
        .pending()
        .filter((p) => p.name === first.name)
        .map((p) => p.expiresAt.toISOString()),
      [renewed.expiresAt],
    );
  },
);

test.serial(
  "a reaper that was down deletes, on its first list, what expired meanwhile",
  async (t) => {
    await reaper.close();
    const grant = await grantAccess(admin, {
      role: "shard-owner",
      to: "carol",
      shard: "bob",
      forMs: 1_000,
    });
    await new Promise((r) => setTimeout(r, 2_500));
    t.is(
      await bindingStatus("shard-bob", grant.name),
      200,
      "nothing deletes it while no reaper runs",
    );
    reaper = createAccessReaper(admin, { retryMs: 200 });
    const restarted = Date.now();
    const lateMs = new Promise<number>((resolve) =>
      reaper.events.on("deleted", (d) => d.name === grant.name && resolve(d.lateMs)),
    );
    reaper.start();
    t.true((await lateMs) >= 1_500);
    t.log(`deleted ${Date.now() - restarted} ms after the reaper started`);
    t.is(await bindingStatus("shard-bob", grant.name), 404);
  },
);

/**
 * A TCP relay to the API server that can be cut, to give the reaper real network failures
 * (connections reset mid-watch, new ones refused) without stopping the cluster.
 */
async function startRelay(
  target: URL,
): Promise<{ url: string; cut(): void; heal(): void; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  let down = false;
  const server = createServer((client) => {
    if (down) return void client.destroy();
    const upstream = connect(Number(target.port), target.hostname);
    for (const [a, b] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      sockets.add(a);
      a.on("close", () => sockets.delete(a));
      a.on("error", () => b.destroy());
      a.pipe(b);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `https://127.0.0.1:${port}`,
    cut() {
      down = true;
      for (const socket of sockets) socket.destroy();
    },
    heal() {
      down = false;
    },
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

test.serial(
  "after losing the API server the reaper retries, re-lists, and deletes what expired meanwhile",
  async (t) => {
    await reaper.close(); // only the reaper behind the relay may act in this test
    const relay = await startRelay(new URL(cluster.server));
    t.teardown(() => relay.close());
    const viaRelay = configOf(cluster.kubeconfigPath);
    viaRelay.clusters = viaRelay.clusters.map((c) => ({ ...c, server: relay.url }));
    const cutOff = createAccessReaper(viaRelay, { retryMs: 200, maxRetryMs: 1_000 });
    t.teardown(() => cutOff.close());
    const errors: string[] = [];
    cutOff.events.on("error", (e) => errors.push(e.during));
    let synced = 0;
    cutOff.events.on("synced", () => (synced += 1));
    cutOff.start();
    while (synced < 2) await new Promise((r) => setTimeout(r, 50));

    relay.cut();
    const grant = await grantAccess(admin, {
      role: "shard-viewer",
      to: "alice",
      shard: "bob",
      forMs: 1_000,
    });
    await new Promise((r) => setTimeout(r, Date.parse(grant.expiresAt) - Date.now() + 2_000));
    t.is(
      await bindingStatus("shard-bob", grant.name),
      200,
      "not deleted while the reaper is cut off",
    );
    t.true(errors.length > 0, "the reaper reported the failures");
    t.log(`errors while cut off: ${errors.join(", ")}`);

    const deleted = new Promise<number>((resolve) =>
      cutOff.events.on("deleted", (d) => d.name === grant.name && resolve(d.lateMs)),
    );
    const healed = Date.now();
    relay.heal();
    await deleted;
    t.log(`deleted ${Date.now() - healed} ms after the network came back`);
    t.is(await bindingStatus("shard-bob", grant.name), 404);
  },
);
