/**
 * The scheduler's client of the node agent API (`node-agent/http.ts`): logs and the three steps
 * of a live migration. Failures become domain errors naming the node; responses are parsed.
 */
import { z } from "zod";
import {
  acceptMigrationReplySchema,
  adoptReplySchema,
  apiErrorBodySchema,
} from "../../contract/api";
import { ConflictError, NotFoundError, UnavailableError } from "../lib/errors";

/** Calls node agents with the agent bearer token. */
export class AgentClient {
  readonly #headers: Record<string, string>;

  /** `token`: the bearer token the agents expect (none: agents without auth, tests only). */
  constructor(token: string | undefined) {
    this.#headers = token === undefined ? {} : { authorization: `Bearer ${token}` };
  }

  /** The log stream of a sandbox on the agent at `address`. */
  async logs(
    address: string,
    id: string,
    follow: boolean,
    signal: AbortSignal,
  ): Promise<ReadableStream<Uint8Array> | null> {
    const response = await this.#call(address, `/v1/sandboxes/${id}/logs?follow=${follow}`, {
      signal,
    });
    return response.body;
  }

  /** Ask the target to listen for the sandbox's incoming state; the port it listens on. */
  async acceptMigration(address: string, id: string): Promise<number> {
    const response = await this.#call(address, `/v1/sandboxes/${id}/accept-migration`, {
      method: "POST",
    });
    return (await this.#parse(address, response, acceptMigrationReplySchema)).port;
  }

  /** Tell the source to send the running sandbox to `host:port`. */
  async migrate(address: string, id: string, host: string, port: number): Promise<void> {
    await this.#call(address, `/v1/sandboxes/${id}/migrate`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ host, port }),
    });
  }

  /** Make the target run the sandbox that arrived; its endpoints. */
  async adopt(address: string, id: string): Promise<Record<string, string>> {
    const response = await this.#call(address, `/v1/sandboxes/${id}/adopt`, { method: "POST" });
    return (await this.#parse(address, response, adoptReplySchema)).endpoints;
  }

  /** Tell the target to drop what arrived (or is arriving) of a failed migration. */
  async abandonMigration(address: string, id: string): Promise<void> {
    await this.#call(address, `/v1/sandboxes/${id}/abandon-migration`, { method: "POST" });
  }

  async #call(address: string, path: string, init: RequestInit): Promise<Response> {
    let response: Response;
    try {
      response = await fetch(`http://${address}${path}`, {
        ...init,
        headers: { ...(init.headers as Record<string, string> | undefined), ...this.#headers },
      });
    } catch (error) {
      throw new UnavailableError(
        "node_unreachable",
        `node agent at ${address} is unreachable: ${(error as Error).message}`,
        { cause: error },
      );
    }
    if (response.ok) return response;
    const text = await response.text();
    let message = text;
    try {
      const body = apiErrorBodySchema.safeParse(JSON.parse(text));
      if (body.success) message = body.data.error.message;
    } catch {
      // not JSON: keep the text
    }
    const what = `node agent at ${address}: ${message}`;
    if (response.status === 404) throw new NotFoundError("node_agent_error", what);
    if (response.status === 409) throw new ConflictError("node_agent_error", what);
    throw new UnavailableError("node_agent_error", what);
  }

  async #parse<S extends z.ZodType>(
    address: string,
    response: Response,
    schema: S,
  ): Promise<z.infer<S>> {
    const parsed = schema.safeParse(await response.json().catch(() => undefined));
    if (!parsed.success) {
      throw new UnavailableError(
        "node_agent_error",
        `node agent at ${address} answered an unexpected body: ${parsed.error.message}`,
      );
    }
    return parsed.data;
  }
}
