/**
 * A client of the Firecracker API (HTTP/1.1 over the VMM's unix socket) and the request sequences
 * the firecracker driver sends: configure + boot, pause + snapshot, load snapshot + resume.
 * Hand-written on node:http: the API is a handful of JSON PUT/PATCH calls and the npm clients are
 * unmaintained.
 */
import { request } from "node:http";

/** The Firecracker API refused a request; `fault` is its `fault_message`. */
export class FirecrackerApiError extends Error {
  constructor(
    readonly method: string,
    readonly path: string,
    readonly status: number,
    readonly fault: string,
  ) {
    super(`firecracker ${method} ${path} answered ${status}: ${fault}`);
    this.name = "FirecrackerApiError";
  }
}

/** JSON calls to one Firecracker process. */
export class FirecrackerApi {
  constructor(readonly socketPath: string) {}

  /** Sends one request; resolves with the parsed body (if any) on 2xx, throws {@link FirecrackerApiError} otherwise. */
  call(method: "GET" | "PUT" | "PATCH", path: string, body?: unknown): Promise<unknown> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = request(
        {
          socketPath: this.socketPath,
          method,
          path,
          headers: {
            accept: "application/json",
            ...(payload === undefined
              ? {}
              : {
                  "content-type": "application/json",
                  "content-length": Buffer.byteLength(payload),
                }),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (chunk: Buffer) => chunks.push(chunk));
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            let parsed: unknown = undefined;
            try {
              parsed = text ? JSON.parse(text) : undefined;
            } catch {
              parsed = text;
            }
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) return resolve(parsed);
            const fault = (parsed as { fault_message?: unknown } | undefined)?.fault_message;
            reject(
              new FirecrackerApiError(
                method,
                path,
                status,
                typeof fault === "string" ? fault : text || "(no body)",
              ),
            );
          });
          res.on("error", reject);
        },
      );
      req.on("error", (error) =>
        reject(
          new Error(`firecracker API at ${this.socketPath} unreachable (${error.message})`, {
            cause: error,
          }),
        ),
      );
      req.end(payload);
    });
  }
}

/** What a microVM boots with. Paths are as the Firecracker process sees them (inside the jail, if jailed). */
export interface MicroVmConfig {
  readonly kernelPath: string;
  readonly bootArgs: string;
  /** The root drive (the guest agent) and further drives, in order (vda, vdb, …). */
  readonly drives: readonly {
    readonly id: string;
    readonly path: string;
    readonly readOnly: boolean;
  }[];
  readonly vcpus: number;
  readonly memoryMiB: number;
}

/** Configures a fresh Firecracker process and starts the guest. */
export async function bootMicroVm(api: FirecrackerApi, config: MicroVmConfig): Promise<void> {
  await api.call("PUT", "/boot-source", {
    kernel_image_path: config.kernelPath,
    boot_args: config.bootArgs,
  });
  for (const [index, drive] of config.drives.entries()) {
    await api.call("PUT", `/drives/${drive.id}`, {
      drive_id: drive.id,
      path_on_host: drive.path,
      is_root_device: index === 0,
      is_read_only: drive.readOnly,
    });
  }
  await api.call("PUT", "/machine-config", {
    vcpu_count: config.vcpus,
    mem_size_mib: config.memoryMiB,
    smt: false,
  });
  await api.call("PUT", "/actions", { action_type: "InstanceStart" });
}

/** Pauses the guest and writes a full snapshot (VM state + memory) to files. */
export async function snapshotMicroVm(
  api: FirecrackerApi,
  snapshotPath: string,
  memoryPath: string,
): Promise<void> {
  await api.call("PATCH", "/vm", { state: "Paused" });
  await api.call("PUT", "/snapshot/create", {
    snapshot_type: "Full",
    snapshot_path: snapshotPath,
    mem_file_path: memoryPath,
  });
}

/** Loads a snapshot into a fresh Firecracker process and resumes the guest. */
export async function restoreMicroVm(
  api: FirecrackerApi,
  snapshotPath: string,
  memoryPath: string,
): Promise<void> {
  await api.call("PUT", "/snapshot/load", {
    snapshot_path: snapshotPath,
    mem_backend: { backend_type: "File", backend_path: memoryPath },
    enable_diff_snapshots: false,
    resume_vm: true,
  });
}
