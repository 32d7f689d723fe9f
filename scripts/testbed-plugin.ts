/**
 * How the testbed's stand-in plugins (`scripts/testbed-provider`, `scripts/testbed-language-host`)
 * talk to the Pulumi engine: a gRPC server on a free loopback port, whose port is the one line
 * they print on stdout (that is how the engine finds a plugin).
 */
import * as grpc from "@grpc/grpc-js";

/** Serve `implementation` of `service` on loopback and print the port for the engine. */
export async function servePlugin<Impl extends grpc.UntypedServiceImplementation>(
  service: grpc.ServiceDefinition<Impl>,
  implementation: Impl,
): Promise<grpc.Server> {
  const server = new grpc.Server({ "grpc.max_receive_message_length": 400 * 1024 * 1024 });
  server.addService(service, implementation);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, bound) =>
      error ? reject(error) : resolve(bound),
    );
  });
  process.stdout.write(`${port}\n`);
  return server;
}

type Handler<Req, Res> = (request: Req) => Res | Promise<Res>;

/** Adapt an async handler to grpc-js's callback style; errors go back as the call's status. */
export function unary<Req, Res>(handler: Handler<Req, Res>): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    Promise.resolve(call.request)
      .then(handler)
      .then(
        (response) => callback(null, response),
        (error: unknown) => {
          const message = error instanceof Error ? error.message : String(error);
          callback({ code: grpc.status.UNKNOWN, details: message }, null);
        },
      );
  };
}
