/** Free TCP ports on loopback, for local mode, tests and benchmarks. */
import { randomInt } from "node:crypto";
import { createServer } from "node:net";

/**
 * Where {@link freePort} looks first: below the kernel's ephemeral range (32768-60999 by default,
 * where every outgoing connection takes its local port, so a port just found free there can be
 * taken again before its caller binds it) and below the process driver's host ports (30000+).
 */
const QUIET_RANGE = { from: 20_000, to: 29_999 } as const;

/** Whether `port` (0: any) can be bound on loopback now; resolves the bound port, or 0. */
function tryPort(port: number): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once("error", () => resolve(0));
    server.listen(port, "127.0.0.1", () => {
      const address = server.address();
      const bound = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(bound));
    });
  });
}

/** A free loopback port: a random one of the quiet range, else one the kernel picks. */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await tryPort(randomInt(QUIET_RANGE.from, QUIET_RANGE.to + 1));
    if (port !== 0) return port;
  }
  const port = await tryPort(0);
  if (port === 0) throw new Error("no free TCP port on 127.0.0.1");
  return port;
}
