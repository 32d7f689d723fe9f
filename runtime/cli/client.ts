/**
 * A small typed client of the scheduler API, used by the CLI and `npm start`. Errors from the API
 * come back as {@link ApiError} carrying the server's message (which names the fix).
 */
import type { XdsClientsReport } from "../../contract/api";
import type { NodeRecord, Resources, SandboxRecord } from "../../contract/model";

/** An error answer of the API. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

/** A node as `GET /v1/nodes` returns it. */
export type NodeView = NodeRecord & { allocated: Resources & { sandboxes: number } };

/** Client of one scheduler. */
export class SchedulerClient {
  readonly #base: string;
  readonly #token: string;

  constructor(base: string, token: string) {
    this.#base = base.replace(/\/+$/, "");
    this.#token = token;
  }

  async #call(path: string, init: RequestInit = {}): Promise<Response> {
    let response: Response;
    try {
      response = await fetch(`${this.#base}${path}`, {
        ...init,
        headers: {
          authorization: `Bearer ${this.#token}`,
          ...(init.body ? { "content-type": "application/json" } : {}),
        },
      });
    } catch (error) {
      throw new ApiError(
        0,
        "unreachable",
        `cannot reach the scheduler at ${this.#base} (${(error as Error).message}); check --api / SHARDWORKS_API`,
      );
    }
    if (!response.ok) {
      const text = await response.text();
      let code = "error";
      let message = text;
      try {
        const body = JSON.parse(text) as { error: { code: string; message: string } };
        code = body.error.code;
        message = body.error.message;
      } catch {
        // not JSON: keep the text
      }
      throw new ApiError(response.status, code, message);
    }
    return response;
  }

  async #json<T>(path: string, init?: RequestInit): Promise<T> {
    return (await (await this.#call(path, init)).json()) as T;
  }

  /** Create a sandbox; `wait` blocks until it is running or has exited. */
  createSandbox(
    spec: Record<string, unknown>,
    wait?: "running" | "exited",
    timeoutSeconds?: number,
  ): Promise<SandboxRecord> {
    const query = new URLSearchParams();
    if (wait) query.set("wait", wait);
    if (wait && timeoutSeconds) query.set("timeout", String(timeoutSeconds));
    const qs = query.size > 0 ? `?${query.toString()}` : "";
    return this.#json(`/v1/sandboxes${qs}`, { method: "POST", body: JSON.stringify(spec) });
  }

  getSandbox(id: string): Promise<SandboxRecord> {
    return this.#json(`/v1/sandboxes/${encodeURIComponent(id)}`);
  }

  async listSandboxes(): Promise<SandboxRecord[]> {
    return (await this.#json<{ items: SandboxRecord[] }>("/v1/sandboxes")).items;
  }

  async deleteSandbox(id: string): Promise<void> {
    await this.#call(`/v1/sandboxes/${encodeURIComponent(id)}`, { method: "DELETE" });
  }

  migrateSandbox(id: string, node: string): Promise<SandboxRecord> {
    return this.#json(`/v1/sandboxes/${encodeURIComponent(id)}/migrate`, {
      method: "POST",
      body: JSON.stringify({ node }),
    });
  }

  /** The sandbox's output as a stream (follow: until it ends). */
  async logs(id: string, follow: boolean): Promise<ReadableStream<Uint8Array>> {
    const response = await this.#call(
      `/v1/sandboxes/${encodeURIComponent(id)}/logs?follow=${follow}`,
    );
    if (!response.body) throw new ApiError(502, "no_body", "the scheduler sent no log stream");
    return response.body;
  }

  async listNodes(): Promise<NodeView[]> {
    return (await this.#json<{ items: NodeView[] }>("/v1/nodes")).items;
  }

  /** Every routing controller replica's xDS clients (CSDS), optionally of one node id. */
  async xdsClients(nodeId?: string): Promise<XdsClientsReport> {
    const query = nodeId === undefined ? "" : `?${new URLSearchParams({ nodeId }).toString()}`;
    return this.#json<XdsClientsReport>(`/v1/xds/clients${query}`);
  }
}
