/**
 * A child process holding a REAL `@grpc/grpc-js-xds` client. `@grpc/grpc-js-xds` reads its
 * bootstrap once per process and keeps its ADS channel open for the life of the process, so each
 * test scenario runs its client here and kills it at teardown. Protocol: one JSON line per call on
 * stdin (`{ id, target, headers }`), one JSON line per answer on stdout (`{ id, backend | error }`).
 */
import { createInterface } from "node:readline";
import { whoClient } from "../../runtime/routing/who";

// eslint-disable-next-line @typescript-eslint/no-require-imports
(require("@grpc/grpc-js-xds") as { register(): void }).register();

const clients = new Map<string, ReturnType<typeof whoClient>>();
const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const { id, target, headers } = JSON.parse(line) as {
    id: number;
    target: string;
    headers: Record<string, string>;
  };
  let client = clients.get(target);
  if (!client) clients.set(target, (client = whoClient(target)));
  client.who(headers).then(
    (backend) => process.stdout.write(`${JSON.stringify({ id, backend })}\n`),
    (error: Error) => process.stdout.write(`${JSON.stringify({ id, error: error.message })}\n`),
  );
});
lines.on("close", () => process.exit(0));
