/**
 * A minimal QMP (QEMU Machine Protocol) client over a unix socket. Hand-written because no
 * well-kept npm QMP library exists; the protocol is small: JSON objects, one per line, a greeting,
 * `qmp_capabilities`, then `{execute, arguments, id}` → `{return|error, id}`, plus async `{event}`.
 */
import { EventEmitter } from "node:events";
import { connect, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";

/** An error QEMU returned for a command. */
export class QmpError extends Error {
  constructor(
    readonly command: string,
    readonly qmpClass: string,
    description: string,
  ) {
    super(`QMP ${command}: ${qmpClass}: ${description}`);
    this.name = "QmpError";
  }
}

interface Pending {
  readonly command: string;
  resolve(value: unknown): void;
  reject(error: Error): void;
}

/** Connects to a unix socket, retrying while QEMU has not created it yet. */
export async function connectUnix(path: string, timeoutMs: number): Promise<Socket> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await new Promise<Socket>((resolve, reject) => {
        const socket = connect(path);
        socket.once("connect", () => {
          socket.off("error", reject);
          resolve(socket);
        });
        socket.once("error", reject);
      });
    } catch (error) {
      if (Date.now() > deadline) {
        throw new Error(`cannot connect to ${path} within ${timeoutMs} ms`, { cause: error });
      }
      await sleep(20);
    }
  }
}

/** A connected QMP session. Emits `event` ({event, data}) and `close`. */
export class QmpClient extends EventEmitter {
  #socket: Socket;
  #buffer = "";
  #nextId = 1;
  #pending = new Map<number, Pending>();
  #closed = false;

  private constructor(socket: Socket) {
    super();
    this.#socket = socket;
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => this.#onData(chunk));
    socket.on("error", () => this.#onClose());
    socket.on("close", () => this.#onClose());
  }

  /** Connects, reads the greeting and leaves capabilities-negotiation mode. */
  static async connect(path: string, timeoutMs = 10_000): Promise<QmpClient> {
    const socket = await connectUnix(path, timeoutMs);
    const client = new QmpClient(socket);
    await client.execute("qmp_capabilities");
    return client;
  }

  /** Runs one command and resolves with its `return` value. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.#closed) return Promise.reject(new Error(`QMP ${command}: connection closed`));
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { command, resolve: resolve, reject });
      const message =
        args === undefined ? { execute: command, id } : { execute: command, arguments: args, id };
      this.#socket.write(`${JSON.stringify(message)}\n`);
    });
  }

  /** Closes the connection; pending commands fail. */
  close(): void {
    this.#socket.destroy();
    this.#onClose();
  }

  #onData(chunk: string): void {
    this.#buffer += chunk;
    let newline: number;
    while ((newline = this.#buffer.indexOf("\n")) >= 0) {
      const line = this.#buffer.slice(0, newline).trim();
      this.#buffer = this.#buffer.slice(newline + 1);
      if (line) this.#onMessage(line);
    }
  }

  #onMessage(line: string): void {
    let message: {
      id?: unknown;
      return?: unknown;
      error?: { class: string; desc: string };
      event?: string;
      data?: unknown;
    };
    try {
      message = JSON.parse(line) as typeof message;
    } catch {
      return;
    }
    if (typeof message.event === "string") {
      this.emit("event", { event: message.event, data: message.data });
      return;
    }
    if (typeof message.id !== "number") return; // the greeting
    const pending = this.#pending.get(message.id);
    if (!pending) return;
    this.#pending.delete(message.id);
    if (message.error)
      pending.reject(new QmpError(pending.command, message.error.class, message.error.desc));
    else pending.resolve(message.return);
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const pending of this.#pending.values()) {
      pending.reject(new Error(`QMP ${pending.command}: QEMU closed the connection`));
    }
    this.#pending.clear();
    this.emit("close");
  }
}
