/**
 * The firecracker driver. On a host without Firecracker/KVM its conformance run is NOT registered
 * (a loud banner says so); what does run here is a PROTOCOL TEST of our Firecracker API client:
 * the request sequences are sent to a real HTTP server on a unix socket that records them. That
 * checks our side of the wire format only, not that Firecracker accepts it or that a VM boots.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import { Driver } from "../../../contract/model";
import {
  FirecrackerApi,
  FirecrackerApiError,
  bootMicroVm,
  createFirecrackerDriver,
  firecrackerAbsence,
  restoreMicroVm,
  snapshotMicroVm,
} from "../../../runtime/node-agent/drivers/firecracker";
import { driverConformance } from "./conformance";

const kernelPath = process.env.SHARDWORKS_FIRECRACKER_KERNEL;
const absent = firecrackerAbsence({ ...(kernelPath ? { kernelPath } : {}) });

if (absent.length === 0) {
  driverConformance(Driver.Firecracker, ({ imageCacheDir }) =>
    createFirecrackerDriver({
      ...(kernelPath ? { kernelPath } : {}),
      imageStore: { cacheDir: imageCacheDir },
    }),
  );
} else {
  test.before(() => {
    const banner = [
      "!".repeat(100),
      "!!! FIRECRACKER CONFORMANCE NOT RUN: Firecracker cannot run on this host.",
      ...absent.map((reason) => `!!!   - ${reason}`),
      "!!! UNVERIFIED: booting a microVM, the guest agent, exit codes and logs over the serial console,",
      "!!! snapshot create/load warm starts, the jailer invocation, ext4 image drives.",
      "!!! Only the API client's request sequences are checked below (protocol test, not conformance).",
      "!".repeat(100),
    ];
    console.log(banner.join("\n"));
  });
}

interface Recorded {
  readonly method: string;
  readonly url: string;
  readonly body: unknown;
}

/** A real HTTP server on a unix socket that records requests; `fail` maps a path to a fault. */
async function recordingServer(
  socket: string,
  fail: Record<string, string> = {},
): Promise<{ server: Server; requests: Recorded[] }> {
  const requests: Recorded[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      requests.push({
        method: req.method ?? "",
        url: req.url ?? "",
        body: text ? JSON.parse(text) : undefined,
      });
      const fault = fail[req.url ?? ""];
      if (fault) {
        res
          .writeHead(400, { "content-type": "application/json" })
          .end(JSON.stringify({ fault_message: fault }));
      } else {
        res.writeHead(204).end();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  return { server, requests };
}

const root = mkdtempSync(join(tmpdir(), "sw-firecracker-"));
test.after.always(() => rmSync(root, { recursive: true, force: true }));

test("protocol test (not conformance): boot sends boot source, drives, machine config, then InstanceStart", async (t) => {
  const socket = join(root, "boot.socket");
  const { server, requests } = await recordingServer(socket);
  t.teardown(() => server.close());
  await bootMicroVm(new FirecrackerApi(socket), {
    kernelPath: "/k/vmlinux",
    bootArgs: "console=ttyS0 init=/init",
    drives: [
      { id: "agent", path: "/d/agent.ext4", readOnly: true },
      { id: "image", path: "/d/image.ext4", readOnly: true },
    ],
    vcpus: 1,
    memoryMiB: 128,
  });
  t.deepEqual(requests, [
    {
      method: "PUT",
      url: "/boot-source",
      body: { kernel_image_path: "/k/vmlinux", boot_args: "console=ttyS0 init=/init" },
    },
    {
      method: "PUT",
      url: "/drives/agent",
      body: {
        drive_id: "agent",
        path_on_host: "/d/agent.ext4",
        is_root_device: true,
        is_read_only: true,
      },
    },
    {
      method: "PUT",
      url: "/drives/image",
      body: {
        drive_id: "image",
        path_on_host: "/d/image.ext4",
        is_root_device: false,
        is_read_only: true,
      },
    },
    {
      method: "PUT",
      url: "/machine-config",
      body: { vcpu_count: 1, mem_size_mib: 128, smt: false },
    },
    { method: "PUT", url: "/actions", body: { action_type: "InstanceStart" } },
  ]);
});

test("protocol test (not conformance): snapshot pauses then creates; restore loads and resumes", async (t) => {
  const socket = join(root, "snap.socket");
  const { server, requests } = await recordingServer(socket);
  t.teardown(() => server.close());
  const api = new FirecrackerApi(socket);
  await snapshotMicroVm(api, "/s/vm.snap", "/s/vm.mem");
  await restoreMicroVm(api, "/s/vm.snap", "/s/vm.mem");
  t.deepEqual(requests, [
    { method: "PATCH", url: "/vm", body: { state: "Paused" } },
    {
      method: "PUT",
      url: "/snapshot/create",
      body: { snapshot_type: "Full", snapshot_path: "/s/vm.snap", mem_file_path: "/s/vm.mem" },
    },
    {
      method: "PUT",
      url: "/snapshot/load",
      body: {
        snapshot_path: "/s/vm.snap",
        mem_backend: { backend_type: "File", backend_path: "/s/vm.mem" },
        enable_diff_snapshots: false,
        resume_vm: true,
      },
    },
  ]);
});

test("protocol test (not conformance): a Firecracker fault becomes an error naming the call and the fault", async (t) => {
  const socket = join(root, "fault.socket");
  const { server } = await recordingServer(socket, { "/machine-config": "Invalid vCPU count" });
  t.teardown(() => server.close());
  const error = await t.throwsAsync(
    bootMicroVm(new FirecrackerApi(socket), {
      kernelPath: "/k",
      bootArgs: "",
      drives: [],
      vcpus: 0,
      memoryMiB: 128,
    }),
    { instanceOf: FirecrackerApiError },
  );
  t.is(error.message, "firecracker PUT /machine-config answered 400: Invalid vCPU count");
  const unreachable = await t.throwsAsync(
    new FirecrackerApi(join(root, "none.socket")).call("GET", "/"),
  );
  t.regex(unreachable.message, /unreachable/);
});

test("probe says exactly why Firecracker cannot run here", async (t) => {
  const probe = await createFirecrackerDriver({
    firecrackerPath: "/nonexistent/firecracker",
  }).probe();
  t.false(probe.usable);
  if (!probe.usable) {
    t.regex(probe.reason, /no "\/nonexistent\/firecracker" binary/);
    t.regex(probe.reason, /no guest kernel configured/);
  }
});
