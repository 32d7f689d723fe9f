/**
 * A real Envoy (the pinned binary of scripts/envoy.ts) fed by a routing controller, and real
 * backends and clients for it: HTTP/1.1 (with WebSocket), h2c, on loopback only.
 */
import type { ExecutionContext } from "ava";
import { request as httpRequest, createServer as createHttpServer } from "node:http";
import { connect as http2Connect, createServer as createH2cServer } from "node:http2";
import type { AddressInfo } from "node:net";
import WebSocket, { WebSocketServer } from "ws";
import { startEnvoy, type EnvoyProcess } from "../../runtime/routing/envoy-process";
import { ensureEnvoy } from "../../scripts/envoy";

/** Start Envoy bootstrapped at the controller on `adsPort`; stopped when the test ends. */
export async function startTestEnvoy(
  t: ExecutionContext,
  adsPort: number,
  options: { waitForListener?: boolean } = {},
): Promise<EnvoyProcess> {
  const envoy = await startEnvoy({ binary: ensureEnvoy(), adsPort, ...options });
  t.teardown(() => envoy.stop());
  return envoy;
}

/** A running backend on loopback. */
export interface TestBackend {
  readonly name: string;
  /** `127.0.0.1:<port>`. */
  readonly address: string;
  readonly port: number;
  close(): Promise<void>;
}

/**
 * An HTTP/1.1 backend answering every request with its name, and every WebSocket with a message
 * `<name>` (then it echoes).
 */
export async function startHttpBackend(name: string): Promise<TestBackend> {
  // Headers up to Envoy's own limit (60 KiB) reach the backend (Node's default is 16 KiB).
  const server = createHttpServer({ maxHeaderSize: 64 * 1024 }, (_req, res) => {
    res.setHeader("content-type", "text/plain");
    res.end(name);
  });
  const wss = new WebSocketServer({ server });
  wss.on("connection", (socket) => {
    socket.send(name);
    socket.on("message", (data) => socket.send(data));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    name,
    address: `127.0.0.1:${port}`,
    port,
    close: async () => {
      for (const client of wss.clients) client.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** An HTTP/2 cleartext (prior knowledge) backend answering with its name and the HTTP version. */
export async function startH2cBackend(name: string): Promise<TestBackend> {
  const server = createH2cServer((req, res) => {
    res.setHeader("content-type", "text/plain");
    res.end(`${name} h${req.httpVersion}`);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    name,
    address: `127.0.0.1:${port}`,
    port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A GET over HTTP/1.1 to `127.0.0.1:port` with a Host header; the status and body. */
export function http1Get(
  port: number,
  host: string,
  headers: Record<string, string | string[]> = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: "127.0.0.1", port, path: "/", headers: { ...headers, host }, agent: false },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (body += chunk));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.setTimeout(5000, () => req.destroy(new Error("HTTP/1.1 request timed out")));
    req.on("error", reject);
    req.end();
  });
}

/** A GET over h2c (prior knowledge) to `127.0.0.1:port` with `:authority`; the status and body. */
export function h2cGet(
  port: number,
  authority: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const session = http2Connect(`http://127.0.0.1:${port}`);
    session.on("error", reject);
    const stream = session.request({ ":path": "/", ":authority": authority, ...headers });
    let status = 0;
    let body = "";
    stream.setEncoding("utf8");
    stream.on("response", (h) => (status = Number(h[":status"])));
    stream.on("data", (chunk: string) => (body += chunk));
    stream.on("end", () => {
      session.close();
      resolve({ status, body });
    });
    stream.on("error", (error: Error) => {
      session.destroy();
      reject(error);
    });
    stream.setTimeout(5000, () => stream.close());
  });
}

/** Open a WebSocket through the gateway; the first message (the backend's name), then an echo. */
export function webSocketHello(
  port: number,
  host: string,
  headers: Record<string, string> = {},
): Promise<{ hello: string; echo: string }> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`ws://127.0.0.1:${port}/`, {
      headers: { ...headers, host },
      handshakeTimeout: 5000,
    });
    const messages: string[] = [];
    socket.on("open", () => socket.send("ping"));
    socket.on("message", (data) => {
      messages.push(
        Buffer.isBuffer(data) ? data.toString() : Buffer.from(data as ArrayBuffer).toString(),
      );
      if (messages.length === 2) {
        socket.close();
        resolve({ hello: messages[0]!, echo: messages[1]! });
      }
    });
    socket.on("unexpected-response", (_req, res) => {
      socket.terminate();
      reject(new Error(`WebSocket upgrade refused: ${res.statusCode}`));
    });
    socket.on("error", reject);
  });
}
