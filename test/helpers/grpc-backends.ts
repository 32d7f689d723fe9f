/**
 * Real gRPC servers on loopback that answer `demo.Who/Who` with their own name, and a client for
 * them: what the routing tests send traffic to. JSON serialization keeps the tests free of a demo
 * .proto; the transport is real gRPC.
 */
import * as grpc from "@grpc/grpc-js";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";

/** The one-method service every backend serves. */
export const whoService: grpc.ServiceDefinition = {
  Who: {
    path: "/demo.Who/Who",
    requestStream: false,
    responseStream: false,
    requestSerialize: (value: unknown) => Buffer.from(JSON.stringify(value)),
    requestDeserialize: (bytes: Buffer) => JSON.parse(bytes.toString()) as unknown,
    responseSerialize: (value: unknown) => Buffer.from(JSON.stringify(value)),
    responseDeserialize: (bytes: Buffer) => JSON.parse(bytes.toString()) as unknown,
    originalName: "who",
  },
};

/** A running backend. */
export interface Backend {
  readonly name: string;
  readonly address: string;
  close(): Promise<void>;
}

/** Start a backend answering `{ backend: name }`. */
export async function startBackend(name: string): Promise<Backend> {
  const server = new grpc.Server();
  server.addService(whoService, {
    Who: (_call: unknown, callback: grpc.sendUnaryData<{ backend: string }>) =>
      callback(null, { backend: name }),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
  return {
    name,
    address: `127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
}

/** A client of the Who service at `target` (e.g. `xds:///api`). */
export function whoClient(target: string): {
  who(headers?: Record<string, string>): Promise<string>;
  close(): void;
} {
  const Client = grpc.makeGenericClientConstructor(whoService, "Who");
  const client = new Client(target, grpc.credentials.createInsecure());
  return {
    who: (headers = {}) =>
      new Promise((resolve, reject) => {
        const metadata = new grpc.Metadata();
        for (const [k, v] of Object.entries(headers)) metadata.set(k, v);
        const deadline = new Date(Date.now() + 5000);
        (
          client as unknown as {
            Who: (
              req: unknown,
              md: grpc.Metadata,
              opts: grpc.CallOptions,
              cb: (e: grpc.ServiceError | null, r?: { backend: string }) => void,
            ) => void;
          }
        ).Who({}, metadata, { deadline }, (error, reply) =>
          error ? reject(error) : resolve(reply?.backend ?? ""),
        );
      }),
    close: () => client.close(),
  };
}

/** Retry `probe` until it returns `expected` (or time runs out); returns the last value seen. */
export async function eventually<T>(
  probe: () => Promise<T>,
  expected: T,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  let lastError: unknown;
  for (;;) {
    try {
      last = await probe();
      if (last === expected) return last;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      if (last !== undefined) return last;
      throw lastError instanceof Error ? lastError : new Error(String(lastError));
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** An xDS client in its own process (see `xds-client-process.ts`), bootstrapped at `xdsAddress`. */
export interface XdsClientProcess {
  who(target: string, headers?: Record<string, string>): Promise<string>;
  close(): Promise<void>;
}

/** Start a `@grpc/grpc-js-xds` client process whose bootstrap points at `xdsAddress`. */
export function startXdsClientProcess(
  xdsAddress: string,
  nodeId = "test-client",
): XdsClientProcess {
  const bootstrap = {
    xds_servers: [
      {
        server_uri: xdsAddress,
        channel_creds: [{ type: "insecure" }],
        server_features: ["xds_v3"],
      },
    ],
    node: { id: nodeId, locality: {} },
  };
  const child = spawn(
    process.execPath,
    ["--import", "tsx", join(__dirname, "xds-client-process.ts")],
    {
      env: { ...process.env, GRPC_XDS_BOOTSTRAP_CONFIG: JSON.stringify(bootstrap) },
      stdio: ["pipe", "pipe", "inherit"],
    },
  );
  const pending = new Map<number, { resolve: (b: string) => void; reject: (e: Error) => void }>();
  let next = 0;
  createInterface({ input: child.stdout }).on("line", (line) => {
    const answer = JSON.parse(line) as { id: number; backend?: string; error?: string };
    const waiter = pending.get(answer.id);
    pending.delete(answer.id);
    if (answer.error !== undefined) waiter?.reject(new Error(answer.error));
    else waiter?.resolve(answer.backend ?? "");
  });
  child.on("exit", () => {
    for (const w of pending.values()) w.reject(new Error("xDS client process exited"));
    pending.clear();
  });
  return {
    who: (target, headers = {}) =>
      new Promise((resolve, reject) => {
        const id = ++next;
        pending.set(id, { resolve, reject });
        child.stdin.write(`${JSON.stringify({ id, target, headers })}\n`);
      }),
    close: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGKILL");
      await exited;
    },
  };
}
