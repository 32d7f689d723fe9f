/**
 * How the testbed's policy-pack language host (`scripts/testbed-language-host`) talks to the Pulumi
 * engine: a gRPC server on a free loopback port, whose port is the one line it prints on stdout
 * (that is how the engine finds a plugin).
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
