/**
 * The platform's own images, pulled back from the testbed registry and run from their unpacked
 * rootfs (read-only, as the image's non-root user, PID 1 of a new PID namespace), the way the
 * RuntimeDeployment and EnvoyGateway pods run them: the runtime answers for each role the
 * component passes as `args`, and the gateway's real Envoy serves a listener.
 */
import test from "ava";
import { freePort } from "../../../runtime/lib/ports";
import { ensureGatewayImage, ensureRuntimeImage } from "../../../scripts/images/catalog";
import { exitOf, pidOneOf, pullAndUnpack, runtimeSpecOf, runUnpacked } from "../../helpers/oci-run";

const quiet = { progress: () => undefined };

function output(child: ReturnType<typeof runUnpacked>): () => string {
  let text = "";
  child.stdout?.on("data", (d: Buffer) => (text += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (text += d.toString()));
  return () => text;
}

test("the runtime image runs the role the RuntimeDeployment names, as 65532 on a read-only root", async (t) => {
  const image = await ensureRuntimeImage(quiet);
  t.regex(image.ref, /\/shardworks\/runtime@sha256:[0-9a-f]{64}$/);
  const unpacked = pullAndUnpack(image.ref);
  t.teardown(unpacked.remove);
  const spec = runtimeSpecOf(unpacked);
  t.deepEqual(spec.user, { uid: 65532, gid: 65532 });
  t.deepEqual(spec.args, [
    "/sbin/init",
    "/usr/bin/node",
    "--import",
    "tsx",
    "/app/runtime/main.ts",
  ]);
  // The component's containers set only `args` (the role): they append to this entrypoint.
  const run = (args: string[]) => {
    const child = runUnpacked(unpacked, { args: [...spec.args, ...args] });
    t.teardown(() => child.kill("SIGKILL"));
    return { child, text: output(child) };
  };
  // main.ts imports every role's main: a role error means the whole import graph loaded
  // (every package it needs is in the image). Both start at once; each start is slow under load.
  const bad = run(["bogus"]);
  const help = run(["routing-controller", "--help"]);
  t.is(await exitOf(bad.child), 2, bad.text());
  t.regex(
    bad.text(),
    /unknown role "bogus"; the first argument must be one of: scheduler, node-agent, routing-controller/,
  );
  t.is(await exitOf(help.child), 0, help.text());
  t.regex(help.text(), /Usage: /);
});

test("the gateway image's Envoy 1.40.0 serves a listener from a bootstrap file, as 101", async (t) => {
  const image = await ensureGatewayImage(quiet);
  const unpacked = pullAndUnpack(image.ref);
  t.teardown(unpacked.remove);
  const spec = runtimeSpecOf(unpacked);
  t.deepEqual(spec.user, { uid: 101, gid: 101 });
  t.deepEqual(spec.args, ["/usr/local/bin/envoy"]);
  const [listen, admin] = [await freePort(), await freePort()];
  const bootstrap = {
    admin: { address: { socket_address: { address: "127.0.0.1", port_value: admin } } },
    static_resources: {
      listeners: [
        {
          name: "probe",
          address: { socket_address: { address: "127.0.0.1", port_value: listen } },
          filter_chains: [
            {
              filters: [
                {
                  name: "envoy.filters.network.http_connection_manager",
                  typed_config: {
                    "@type":
                      "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    stat_prefix: "probe",
                    route_config: {
                      virtual_hosts: [
                        {
                          name: "all",
                          domains: ["*"],
                          routes: [
                            {
                              match: { prefix: "/" },
                              direct_response: {
                                status: 200,
                                body: { inline_string: "from the gateway image" },
                              },
                            },
                          ],
                        },
                      ],
                    },
                    http_filters: [
                      {
                        name: "envoy.filters.http.router",
                        typed_config: {
                          "@type":
                            "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
                        },
                      },
                    ],
                  },
                },
              ],
            },
          ],
        },
      ],
    },
  };
  // EnvoyGateway passes `-c /etc/envoy/envoy.json … --disable-hot-restart`; -c given inline here.
  const envoy = runUnpacked(unpacked, {
    args: [
      ...spec.args,
      "--config-yaml",
      JSON.stringify(bootstrap),
      "--disable-hot-restart",
      "--log-level",
      "warn",
    ],
  });
  const text = output(envoy);
  t.teardown(() => envoy.kill("SIGKILL"));
  let body = "";
  for (let i = 0; i < 300 && body === "" && envoy.exitCode === null; i++) {
    try {
      body = await (await fetch(`http://127.0.0.1:${listen}/`)).text();
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  t.is(body, "from the gateway image", text());
  const version = await (await fetch(`http://127.0.0.1:${admin}/server_info`)).json();
  t.regex(JSON.stringify(version), /\/1\.40\.0\//);
  // Envoy is PID 1 itself (no init): it must handle SIGTERM on its own.
  process.kill(await pidOneOf(envoy), "SIGTERM");
  t.is(await exitOf(envoy), 0);
});
