/**
 * The one client of the scheduler API: the CLI, `npm start`, the routing demo and the rollout's
 * gates use it. Answers are parsed with the schemas the server is written against
 * (`./api`), so a reply that is not what the contract says fails here, by name, instead of
 * flowing on as a wrongly typed value. Errors from the API come back as {@link ApiError} carrying
 * the server's message (which names the fix).
 */
import type { z } from "zod";
import {
  apiErrorBodySchema,
  healthzSchema,
  nodeListSchema,
  sandboxListSchema,
  sandboxViewSchema,
  shardListSchema,
  shardReplySchema,
  xdsClientsReportSchema,
  type Healthz,
  type NodeView,
  type SandboxView,
  type ShardReply,
  type ShardView,
  type XdsClientsReport,
} from "./api";

/** An error answer of the API (status 0: the scheduler did not answer at all). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** The answer's body: parsed JSON, else its text. */
    readonly body?: unknown,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "ApiError";
  }
}

/** How a client calls; every field is optional. */
export interface SchedulerClientOptions {
  /**
   * Longest a call may take, in ms, beyond a wait it asks the server for (a scheduler or
   * port-forward that accepts and never answers must fail the call, not hang it). Default: none.
   */
  readonly timeoutMs?: number;
  /**
   * The error thrown when the scheduler does not answer (refused, unresolvable, timed out).
   * Default: an {@link ApiError} with status 0 and code `unreachable`.
   */
  readonly unreachable?: (base: string, error: unknown) => Error;
}

/** Per call: cancel it, or bound this one call. */
export interface CallOptions {
  readonly signal?: AbortSignal;
  /** Overrides {@link SchedulerClientOptions.timeoutMs} for this call. */
  readonly timeoutMs?: number;
}

/** One answer: its status and its body (parsed JSON, else the text). */
export interface RawAnswer {
  readonly status: number;
  readonly body: unknown;
}

/** `fetch failed` says nothing: the cause (ENOTFOUND, ECONNREFUSED, …) is what a person needs. */
export function unreachableCause(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (error as Error).message;
}

/** Client of one scheduler. */
export class SchedulerClient {
  readonly #base: string;
  readonly #token: string;
  readonly #options: SchedulerClientOptions;

  constructor(base: string, token: string, options: SchedulerClientOptions = {}) {
    this.#base = base.replace(/\/+$/, "");
    this.#token = token;
    this.#options = options;
  }

  /** The base URL, without a trailing slash. */
  get base(): string {
    return this.#base;
  }

  async #fetch(
    method: string,
    path: string,
    init: CallOptions & { body?: unknown; headers?: Record<string, string> } = {},
  ): Promise<Response> {
    const timeoutMs = init.timeoutMs ?? this.#options.timeoutMs;
    const signals = [
      ...(init.signal ? [init.signal] : []),
      ...(timeoutMs === undefined ? [] : [AbortSignal.timeout(timeoutMs)]),
    ];
    try {
      return await fetch(`${this.#base}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${this.#token}`,
          ...(init.body === undefined ? {} : { "content-type": "application/json" }),
          ...init.headers,
        },
        ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
        ...(signals.length === 0 ? {} : { signal: AbortSignal.any(signals) }),
      });
    } catch (error) {
      throw (
        this.#options.unreachable?.(this.#base, error) ??
        new ApiError(
          0,
          "unreachable",
          `cannot reach the scheduler at ${this.#base} (${unreachableCause(error)})`,
          undefined,
          { cause: error },
        )
      );
    }
  }

  /**
   * One call whatever its status: for callers that judge the status themselves (a health gate,
   * a preflight). Throws only when the scheduler does not answer.
   */
  async request(
    method: string,
    path: string,
    init: CallOptions & { body?: unknown; headers?: Record<string, string> } = {},
  ): Promise<RawAnswer> {
    const response = await this.#fetch(method, path, init);
    return { status: response.status, body: bodyOf(await response.text()) };
  }

  /** A call that must succeed: a non-2xx answer throws {@link ApiError}. */
  async #ok(
    method: string,
    path: string,
    init?: CallOptions & { body?: unknown; headers?: Record<string, string> },
  ): Promise<Response> {
    const response = await this.#fetch(method, path, init);
    if (!response.ok) throw errorOf(response.status, await response.text());
    return response;
  }

  async #parsed<S extends z.ZodType>(
    schema: S,
    method: string,
    path: string,
    init?: CallOptions & { body?: unknown },
  ): Promise<z.infer<S>> {
    const response = await this.#ok(method, path, init);
    return parseAnswer(schema, `${method} ${path}`, response.status, await response.text());
  }

  /** `GET /healthz`: the scheduler reaches etcd; the version it runs when it reports one. */
  healthz(options?: CallOptions): Promise<Healthz> {
    return this.#parsed(healthzSchema, "GET", "/healthz", options);
  }

  /** Create a sandbox; `wait` blocks until it is running or has exited. */
  createSandbox(
    spec: Record<string, unknown>,
    wait?: "running" | "exited",
    timeoutSeconds?: number,
    options?: CallOptions,
  ): Promise<SandboxView> {
    const query = new URLSearchParams();
    if (wait) query.set("wait", wait);
    if (wait && timeoutSeconds) query.set("timeout", String(timeoutSeconds));
    const qs = query.size > 0 ? `?${query.toString()}` : "";
    return this.#parsed(sandboxViewSchema, "POST", `/v1/sandboxes${qs}`, {
      ...options,
      body: spec,
    });
  }

  getSandbox(id: string, options?: CallOptions): Promise<SandboxView> {
    return this.#parsed(
      sandboxViewSchema,
      "GET",
      `/v1/sandboxes/${encodeURIComponent(id)}`,
      options,
    );
  }

  async listSandboxes(options?: CallOptions): Promise<SandboxView[]> {
    return (await this.#parsed(sandboxListSchema, "GET", "/v1/sandboxes", options)).items;
  }

  async deleteSandbox(id: string, options?: CallOptions): Promise<void> {
    await this.#ok("DELETE", `/v1/sandboxes/${encodeURIComponent(id)}`, options);
  }

  migrateSandbox(id: string, node: string, options?: CallOptions): Promise<SandboxView> {
    return this.#parsed(
      sandboxViewSchema,
      "POST",
      `/v1/sandboxes/${encodeURIComponent(id)}/migrate`,
      { ...options, body: { node } },
    );
  }

  /** The sandbox's output as a stream (follow: until it ends). */
  async logs(
    id: string,
    follow: boolean,
    options?: CallOptions,
  ): Promise<ReadableStream<Uint8Array>> {
    const response = await this.#ok(
      "GET",
      `/v1/sandboxes/${encodeURIComponent(id)}/logs?follow=${follow}`,
      options,
    );
    if (!response.body) throw new ApiError(502, "no_body", "the scheduler sent no log stream");
    return response.body;
  }

  async listNodes(options?: CallOptions): Promise<NodeView[]> {
    return (await this.#parsed(nodeListSchema, "GET", "/v1/nodes", options)).items;
  }

  /** Every routing controller replica's xDS clients (CSDS), optionally of one node id. */
  xdsClients(nodeId?: string, options?: CallOptions): Promise<XdsClientsReport> {
    const query = nodeId === undefined ? "" : `?${new URLSearchParams({ nodeId }).toString()}`;
    return this.#parsed(xdsClientsReportSchema, "GET", `/v1/xds/clients${query}`, options);
  }

  /**
   * `PUT /v1/shards/<name>`: create or update a shard (`createOnly`: never overwrite one, the
   * answer is 409 `shard_exists` instead). `token` is in the answer only when it created the shard.
   */
  putShard(
    name: string,
    body: {
      routingKey: string;
      owner: string;
      forks: readonly { service: string; destination: string; protocol?: string }[];
      ttlSeconds?: number;
    },
    options?: CallOptions & { createOnly?: boolean },
  ): Promise<ShardReply> {
    return this.#parsed(shardReplySchema, "PUT", `/v1/shards/${encodeURIComponent(name)}`, {
      ...options,
      body,
      ...(options?.createOnly ? { headers: { "if-none-match": "*" } } : {}),
    });
  }

  async getShard(name: string, options?: CallOptions): Promise<ShardView> {
    const path = `/v1/shards/${encodeURIComponent(name)}`;
    return (await this.#parsed(shardReplySchema, "GET", path, options)).shard;
  }

  async listShards(options?: CallOptions): Promise<ShardView[]> {
    return (await this.#parsed(shardListSchema, "GET", "/v1/shards", options)).shards;
  }

  async deleteShard(name: string, options?: CallOptions): Promise<void> {
    await this.#ok("DELETE", `/v1/shards/${encodeURIComponent(name)}`, options);
  }
}

/** A body as JSON when it is JSON, else its text. */
function bodyOf(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** The {@link ApiError} of a non-2xx answer: the server's code and message, else its text. */
function errorOf(status: number, text: string): ApiError {
  const body = bodyOf(text);
  const parsed = apiErrorBodySchema.safeParse(body);
  return parsed.success
    ? new ApiError(status, parsed.data.error.code, parsed.data.error.message, body)
    : new ApiError(status, "error", text, body);
}

/** A 2xx answer parsed with its schema; one that does not fit is the scheduler's fault (502). */
function parseAnswer<S extends z.ZodType>(
  schema: S,
  what: string,
  status: number,
  text: string,
): z.infer<S> {
  const body = bodyOf(text);
  const parsed = schema.safeParse(body);
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues
    .slice(0, 3)
    .map((i) => `${i.path.map(String).join(".") || "(body)"}: ${i.message}`)
    .join("; ");
  throw new ApiError(
    502,
    "bad_answer",
    `${what} answered ${status} with a body the API contract does not allow (${issues})`,
    body,
  );
}
