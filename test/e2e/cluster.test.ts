import test from "ava";
import * as k8s from "@kubernetes/client-node";
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { clusterStatus, startCluster, stopCluster } from "../../scripts/cluster";
import { ensureTools } from "../../scripts/tools";
import { statusOf } from "../helpers/kube";

function apiFor(kubeconfigPath: string) {
  const config = new k8s.KubeConfig();
  config.loadFromFile(kubeconfigPath);
  return {
    core: config.makeApiClient(k8s.CoreV1Api),
    rbac: config.makeApiClient(k8s.RbacAuthorizationV1Api),
  };
}

/** Running (a reaped or zombie process has no command line). */
function pidAlive(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").length > 0;
  } catch {
    return false;
  }
}

test("a local cluster enforces RBAC on token users, finalizes namespace deletion, and down stops every process", async (t) => {
  await ensureTools();
  const name = `e2e-cluster-${process.pid}`;
  t.teardown(() => stopCluster(name, { purge: true, log: () => undefined }));
  const started = Date.now();
  const cluster = await startCluster(name, { log: (line) => t.log(line) });
  t.log(`cluster up in ${((Date.now() - started) / 1000).toFixed(1)} s`);

  // `up` twice is idempotent: same server, same processes.
  const again = await startCluster(name, { log: (line) => t.log(line) });
  t.is(again.server, cluster.server);
  t.deepEqual(await clusterStatus(name), {
    name,
    running: true,
    server: cluster.server,
    ready: true,
    kubeconfig: cluster.kubeconfigPath,
  });

  const admin = apiFor(cluster.kubeconfigPath);
  const alice = apiFor(cluster.kubeconfigPathFor("alice"));
  const bob = apiFor(cluster.kubeconfigPathFor("bob"));
  for (const ns of ["team-a", "team-b"]) {
    await admin.core.createNamespace({ body: { metadata: { name: ns } } });
  }

  // No binding yet: alice is authenticated but refused.
  t.is(await statusOf(() => alice.core.listNamespacedConfigMap({ namespace: "team-a" })), 403);

  await admin.rbac.createNamespacedRole({
    namespace: "team-a",
    body: {
      metadata: { name: "configmap-editor" },
      rules: [
        { apiGroups: [""], resources: ["configmaps"], verbs: ["get", "list", "create", "delete"] },
      ],
    },
  });
  await admin.rbac.createNamespacedRoleBinding({
    namespace: "team-a",
    body: {
      metadata: { name: "alice-edits-configmaps" },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "configmap-editor" },
      subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name: "alice" }],
    },
  });

  // Bound: alice may act in team-a, still not in team-b; bob (unbound) nowhere.
  await alice.core.createNamespacedConfigMap({
    namespace: "team-a",
    body: { metadata: { name: "note" }, data: { by: "alice" } },
  });
  const note = await admin.core.readNamespacedConfigMap({ namespace: "team-a", name: "note" });
  t.deepEqual(note.data, { by: "alice" });
  t.is(
    await statusOf(() =>
      alice.core.createNamespacedConfigMap({
        namespace: "team-b",
        body: { metadata: { name: "note" } },
      }),
    ),
    403,
  );
  t.is(await statusOf(() => bob.core.listNamespacedConfigMap({ namespace: "team-a" })), 403);
  t.is(await statusOf(() => alice.core.listNamespace()), 403);

  // Namespace deletion completes because the controller manager's namespace controller runs.
  const deleteStarted = Date.now();
  await admin.core.deleteNamespace({ name: "team-a" });
  let gone = false;
  while (!gone && Date.now() - deleteStarted < 90_000) {
    gone = (await statusOf(() => admin.core.readNamespace({ name: "team-a" }))) === 404;
    if (!gone) await new Promise((r) => setTimeout(r, 250));
  }
  t.true(gone, "namespace team-a was not finalized within 90 s");
  t.log(`namespace finalized in ${((Date.now() - deleteStarted) / 1000).toFixed(1)} s`);

  // down: every process is gone and status says so.
  const state = JSON.parse(await readFile(join(cluster.dir, "state.json"), "utf8")) as {
    pids: Record<string, number>;
  };
  const pids = Object.values(state.pids).filter((p) => p > 0);
  t.is(pids.length, 3);
  t.true(pids.every(pidAlive));
  await stopCluster(name, { log: (line) => t.log(line) });
  t.deepEqual(
    pids.filter((p) => pidAlive(p)),
    [],
  );
  t.deepEqual(await clusterStatus(name), { name, running: false });
});

test("cluster names are validated with a message that says what is allowed", async (t) => {
  await t.throwsAsync(() => startCluster("Bad_Name"), {
    message: /a cluster name is 1-40 lowercase letters, digits or '-'/,
  });
});
