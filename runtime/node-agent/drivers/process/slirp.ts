/** User-mode networking of a process sandbox (slirp4netns) and its port forwards. */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createConnection } from "node:net";
import type { Readable } from "node:stream";

/**
 * Starts slirp4netns on the sandbox's network namespace: a user-mode NAT (10.0.2.0/24) with the
 * host's loopback NOT reachable (`--disable-host-loopback`) and an API socket for port forwards.
 * Resolves once the network is configured.
 */
export async function startSlirp(
  binary: string,
  pid: number,
  apiSocket: string,
): Promise<ChildProcess> {
  const slirp = spawn(
    binary,
    [
      "--configure",
      "--mtu=65520",
      "--disable-host-loopback",
      "--ready-fd=3",
      "--api-socket",
      apiSocket,
      // By path: slirp4netns's pid mode setns()s in a way this kernel refuses (EPERM).
      "--netns-type=path",
      `/proc/${pid}/ns/net`,
      "tap0",
    ],
    { stdio: ["ignore", "ignore", "pipe", "pipe"] },
  );
  let stderr = "";
  slirp.stderr?.on("data", (chunk: Buffer) => {
    if (stderr.length < 4096) stderr += chunk.toString("utf8");
  });
  const ready = new Promise<void>((resolve, reject) => {
    (slirp.stdio[3] as Readable).once("data", () => resolve());
    slirp.once("error", (error) =>
      reject(
        new Error(
          `cannot run slirp4netns "${binary}" (${error.message}); install Debian's slirp4netns`,
        ),
      ),
    );
    slirp.once("exit", (code) =>
      reject(new Error(`slirp4netns exited (${code}) before the network was up: ${stderr.trim()}`)),
    );
  });
  try {
    await ready;
  } catch (error) {
    slirp.kill("SIGKILL");
    throw error;
  }
  return slirp;
}

export async function slirpForward(
  apiSocket: string,
  hostPort: number,
  guestPort: number,
): Promise<void> {
  const socket = createConnection(apiSocket);
  await once(socket, "connect");
  socket.end(
    JSON.stringify({
      execute: "add_hostfwd",
      arguments: {
        proto: "tcp",
        host_addr: "127.0.0.1",
        host_port: hostPort,
        guest_port: guestPort,
      },
    }),
  );
  let reply = "";
  for await (const chunk of socket) reply += (chunk as Buffer).toString("utf8");
  if (!reply.includes('"return"')) {
    throw new Error(
      `slirp4netns could not forward host port ${hostPort} (${reply.trim() || "no reply"}); is it in use on the host?`,
    );
  }
}
