/**
 * A one-method gRPC service, `demo.Who/Who`, that answers with the name of the backend that
 * served it: what the routing demo, tests and bench send traffic to. JSON serialization keeps it
 * free of a demo .proto; the transport is real gRPC.
 */
import * as grpc from "@grpc/grpc-js";

/** The service definition every Who backend serves. */
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

/** A running Who backend. */
export interface WhoBackend {
  readonly name: string;
  /** `127.0.0.1:<port>`. */
  readonly address: string;
  close(): Promise<void>;
}

/** Start a backend on loopback answering `{ backend: name }`. */
export async function startWhoBackend(name: string, host = "127.0.0.1"): Promise<WhoBackend> {
  const server = new grpc.Server();
  server.addService(whoService, {
    Who: (_call: unknown, callback: grpc.sendUnaryData<{ backend: string }>) =>
      callback(null, { backend: name }),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:0`, grpc.ServerCredentials.createInsecure(), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
  return {
    name,
    address: `${host}:${port}`,
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
}

/**
 * A client of the Who service at `target` (e.g. `xds:///api`); `options` are gRPC channel
 * options (e.g. `grpc.default_authority` to name the service through a gateway).
 */
export function whoClient(
  target: string,
  options: grpc.ChannelOptions = {},
): {
  who(headers?: Record<string, string>, timeoutMs?: number): Promise<string>;
  close(): void;
} {
  const Client = grpc.makeGenericClientConstructor(whoService, "Who");
  const client = new Client(target, grpc.credentials.createInsecure(), options) as unknown as {
    Who: (
      req: unknown,
      md: grpc.Metadata,
      opts: grpc.CallOptions,
      cb: (e: grpc.ServiceError | null, r?: { backend: string }) => void,
    ) => void;
    close(): void;
  };
  return {
    who: (headers = {}, timeoutMs = 5000) =>
      new Promise((resolve, reject) => {
        const metadata = new grpc.Metadata();
        for (const [k, v] of Object.entries(headers)) metadata.set(k, v);
        client.Who({}, metadata, { deadline: new Date(Date.now() + timeoutMs) }, (error, reply) =>
          error ? reject(error) : resolve(reply?.backend ?? ""),
        );
      }),
    close: () => client.close(),
  };
}
