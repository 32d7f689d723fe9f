import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import { loadKubeConfig } from "../../runtime/access";

// Each ava file runs in its own process: the environment changed here is this file's.
const home = mkdtempSync(join(tmpdir(), "sw-kubeconfig-"));
test.after.always(() => rmSync(home, { recursive: true, force: true }));

test.serial("without any kubeconfig the access tools say how to name one, not a TLS error", (t) => {
  process.env.HOME = home;
  delete process.env.KUBECONFIG;
  delete process.env.KUBERNETES_SERVICE_HOST;
  const error = t.throws(() => loadKubeConfig());
  t.regex(
    error.message,
    /^--kubeconfig: no kubeconfig .*pass --kubeconfig <file> or set KUBECONFIG/,
  );
  t.regex(error.message, /npm run cluster -- up/);
});

test.serial("a kubeconfig named by KUBECONFIG is loaded", (t) => {
  const file = join(home, "config");
  writeFileSync(
    file,
    [
      "apiVersion: v1",
      "kind: Config",
      "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:6443'}}]",
      "users: [{name: u, user: {token: t}}]",
      "contexts: [{name: x, context: {cluster: c, user: u}}]",
      "current-context: x",
    ].join("\n"),
  );
  process.env.KUBECONFIG = file;
  t.is(loadKubeConfig().getCurrentCluster()?.server, "https://127.0.0.1:6443");
});
