/**
 * `ShardRegistration`: a Pulumi dynamic resource that registers a dev shard with the runtime's
 * shard API (`PUT/DELETE /v1/shards/<name>` on the scheduler), so `pulumi up` creates or renews
 * the registration and `pulumi destroy` deregisters it (its routes vanish). The shard token the API
 * returns once, on creation, is kept as a secret output.
 *
 * The provider functions only use `fetch` and plain code: Pulumi serializes them into the state,
 * so they must not capture modules with native state.
 */
import * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import {
  apiErrorBodySchema,
  shardReplySchema,
  type ApiErrorBody,
  type ShardReply as ShardApiReply,
} from "../contract/api";
import {
  MAX_SHARD_TTL_SECONDS,
  destinationSchema,
  dnsLabel,
  routingKeySchema,
} from "../contract/model";
import type { ShardRegistrationInput } from "./dev-shard";

/** What the provider stores as inputs. */
export interface ShardRegistrationProps {
  /** Base URL of the scheduler API, e.g. `https://api.shardworks.example`. */
  apiUrl: string;
  /** Platform token (only the platform token may create shards). Secret. */
  token: string;
  /** Shard name (DNS label). Changing it replaces the registration. */
  name: string;
  routingKey: string;
  owner: string;
  /** Baseline service → fork destination `host:port`. */
  forks: Record<string, string>;
  ttlSeconds: number;
  /** Changes on every `pulumi up` of a shard whose TTL restarts, so the update renews it. */
  renewKey?: string;
}

/** What the provider returns as outputs. */
export interface ShardRegistrationOutputs extends ShardRegistrationProps {
  /** The shard's own bearer token (returned by the API once). Secret. */
  shardToken: string;
  expiresAt: string;
}

/** An answer of the shard API: the shard (and its token, on creation), or the API's error. */
type ShardReply = Partial<ShardApiReply> & Partial<ApiErrorBody>;

/**
 * The JSON Schema (plain data, which Pulumi can serialize into the provider; see
 * {@link PROPS_JSON_SCHEMA}) of a zod schema of the contract, for `z.fromJSONSchema` to rebuild.
 */
function plainJsonSchema(schema: z.ZodType): z.core.JSONSchema.JSONSchema {
  return JSON.parse(
    JSON.stringify(z.toJSONSchema(schema, { unrepresentable: "any", io: "input" })),
  ) as z.core.JSONSchema.JSONSchema;
}

/**
 * The answers of the scheduler's shard API, as `contract/api/` defines them. This provider cannot
 * use the shared client (`contract/client.ts`): Pulumi serializes the provider's functions and
 * everything they capture, and zod schema objects cannot be serialized, so it parses the answers
 * with the same schemas rebuilt from their JSON Schema.
 */
const REPLY_JSON_SCHEMAS = {
  shard: plainJsonSchema(shardReplySchema),
  error: plainJsonSchema(apiErrorBodySchema),
};

/** An answer's body parsed with {@link REPLY_JSON_SCHEMAS}: what the contract says it holds. */
function parseReply(text: string): ShardReply {
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : {};
  } catch {
    // The shared client's code for the same fault (docs/readme/errors.md).
    return { error: { code: "bad_answer", message: text.slice(0, 200) } };
  }
  // Required here, by name: Pulumi cannot map zod's internal module paths when it captures `z`.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const zod = require("zod") as typeof import("zod");
  // fromJSONSchema loses the static type; the shapes are those of the schemas just parsed with.
  const shard = zod.z.fromJSONSchema(REPLY_JSON_SCHEMAS.shard).safeParse(body);
  if (shard.success) return shard.data as ShardApiReply;
  const error = zod.z.fromJSONSchema(REPLY_JSON_SCHEMAS.error).safeParse(body);
  return error.success ? (error.data as ApiErrorBody) : {};
}

async function callApi(
  props: Pick<ShardRegistrationProps, "apiUrl" | "token" | "name">,
  method: "GET" | "PUT" | "DELETE",
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; reply: ShardReply }> {
  const url = `${props.apiUrl.replace(/\/+$/, "")}/v1/shards/${encodeURIComponent(props.name)}`;
  let response: Response;
  try {
    response = await fetch(url, {
      method,
      headers: {
        authorization: `Bearer ${props.token}`,
        "content-type": "application/json",
        ...headers,
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  } catch (error) {
    throw new Error(`cannot reach the shard API at ${props.apiUrl}: ${String(error)}`, {
      cause: error,
    });
  }
  return { status: response.status, reply: parseReply(await response.text()) };
}

function failure(action: string, name: string, status: number, reply: ShardReply): Error {
  return new Error(
    `${action} shard "${name}" failed (HTTP ${status}): ${reply.error?.message ?? "no error message"}`,
  );
}

function shardBody(p: ShardRegistrationProps): unknown {
  return {
    routingKey: p.routingKey,
    owner: p.owner,
    forks: Object.entries(p.forks)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([service, destination]) => ({ service, destination })),
    ttlSeconds: p.ttlSeconds,
  };
}

/**
 * What check() accepts: the API's own rules, from the shared schemas of `contract/model/`
 * (one definition of a routing key, destination and the 7-day TTL limit). Pulumi serializes the
 * provider into the state and cannot serialize zod schema objects (they hold bound native
 * functions), so the provider captures their JSON Schema (plain data) and rebuilds the zod schema
 * with `z.fromJSONSchema` when it runs (zod itself is required by name).
 */
// (JSON round trip: a plain copy, without the references zod keeps, that Pulumi can serialize.)
const PROPS_JSON_SCHEMA = JSON.parse(
  JSON.stringify(
    z.toJSONSchema(
      z.looseObject({
        apiUrl: z.string().regex(/^https?:\/\//),
        token: z.string().min(1),
        name: dnsLabel,
        routingKey: routingKeySchema,
        owner: z.string().min(1).max(253),
        forks: z.record(dnsLabel, destinationSchema),
        ttlSeconds: z.number().int().min(1).max(MAX_SHARD_TTL_SECONDS),
      }),
      { unrepresentable: "any" },
    ),
  ),
) as z.core.JSONSchema.JSONSchema;

/** The provider behind {@link ShardRegistration} (exported so it can be tested directly). */
export const shardRegistrationProvider: pulumi.dynamic.ResourceProvider<
  ShardRegistrationProps,
  ShardRegistrationOutputs
> = {
  // check() runs at preview: the same rules as the API, so mistakes show before anything changes.
  check(_olds, news) {
    // Required here, by name: Pulumi cannot map zod's internal module paths when it captures `z`.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const zod = require("zod") as typeof import("zod");
    const parsed = zod.z.fromJSONSchema(PROPS_JSON_SCHEMA).safeParse(news);
    const reasons = new Map<string, string[]>();
    for (const issue of parsed.error?.issues ?? []) {
      const property = issue.path.map(String).join(".") || "(inputs)";
      reasons.set(property, [...(reasons.get(property) ?? []), issue.message]);
    }
    const failures = [...reasons].map(([property, reason]) => ({
      property,
      reason: reason.join("; "),
    }));
    return Promise.resolve(failures.length ? { inputs: news, failures } : { inputs: news });
  },

  async create(inputs) {
    // Create-only: the API answers 409 instead of overwriting a shard someone else registered.
    const { status, reply } = await callApi(inputs, "PUT", shardBody(inputs), {
      "if-none-match": "*",
    });
    if (status === 409 && reply.error?.code === "shard_exists") {
      throw new Error(
        `shard "${inputs.name}" is already registered; delete it ('DELETE /v1/shards/${inputs.name}') or choose another name`,
      );
    }
    if (status !== 201 || !reply.token || !reply.shard) {
      throw failure("registering", inputs.name, status, reply);
    }
    return {
      id: inputs.name,
      outs: { ...inputs, shardToken: reply.token, expiresAt: reply.shard.expiresAt },
    };
  },

  diff(_id, olds, news) {
    const fields = ["routingKey", "owner", "ttlSeconds", "renewKey", "token"] as const;
    const changed: string[] = fields.filter((f) => olds[f] !== news[f]);
    if (JSON.stringify(sorted(olds.forks)) !== JSON.stringify(sorted(news.forks))) {
      changed.push("forks");
    }
    // Another API is another registry: the shard must be registered there (and removed here).
    const replaces = (["name", "apiUrl"] as const).filter((f) => olds[f] !== news[f]);
    return Promise.resolve({
      changes: changed.length > 0 || replaces.length > 0,
      replaces,
      // A routing key is unique across shards: the old registration must go first.
      deleteBeforeReplace: true,
    });
  },

  async update(_id, olds, news) {
    const { status, reply } = await callApi(news, "PUT", shardBody(news));
    // 201: the shard had expired and was reaped, so this PUT created it anew with a new token.
    if (status === 201 && reply.shard && reply.token) {
      return { outs: { ...news, shardToken: reply.token, expiresAt: reply.shard.expiresAt } };
    }
    if (status !== 200 || !reply.shard) throw failure("updating", news.name, status, reply);
    return { outs: { ...news, shardToken: olds.shardToken, expiresAt: reply.shard.expiresAt } };
  },

  async delete(_id, props) {
    let result: { status: number; reply: ShardReply };
    try {
      result = await callApi(props, "DELETE");
      // The platform token may have been rotated: the shard's own token may delete its shard.
      if ((result.status === 401 || result.status === 403) && props.shardToken) {
        result = await callApi({ ...props, token: props.shardToken }, "DELETE");
      }
    } catch (error) {
      // Unreachable API after the TTL: the reaper has removed the shard (or will), so it is gone.
      if (props.expiresAt && Date.parse(props.expiresAt) <= Date.now()) {
        console.warn(
          `shard "${props.name}": the shard API is unreachable, but the shard expired at ${props.expiresAt} and the reaper removes it; treating it as deleted`,
        );
        return;
      }
      throw error;
    }
    // Already gone (reaped at its TTL, or deleted by hand) is what delete wants.
    if (result.status !== 204 && result.status !== 404) {
      throw failure("deregistering", props.name, result.status, result.reply);
    }
  },

  async read(id, props) {
    if (!props) throw new Error(`cannot read shard "${id}" without its stored API URL and token`);
    const { status, reply } = await callApi({ ...props, name: id }, "GET");
    if (status === 404) return {};
    if (status !== 200 || !reply.shard) throw failure("reading", id, status, reply);
    return { id, props: { ...props, expiresAt: reply.shard.expiresAt } };
  },
};

function sorted(forks: Record<string, string> | undefined): [string, string][] {
  return Object.entries(forks ?? {}).sort(([a], [b]) => a.localeCompare(b));
}

/** Arguments of {@link ShardRegistration}. */
export interface ShardRegistrationArgs {
  /** Base URL of the scheduler API. */
  apiUrl: pulumi.Input<string>;
  /** The platform token; stored as a secret. */
  token: pulumi.Input<string>;
  /** Shard name; changing it replaces the registration. */
  name: pulumi.Input<string>;
  routingKey: pulumi.Input<string>;
  owner: pulumi.Input<string>;
  /** Baseline service → fork `host:port`. */
  forks: pulumi.Input<Record<string, pulumi.Input<string>>>;
  /** Time to live, seconds (the API caps it). */
  ttlSeconds: pulumi.Input<number>;
  /** Any value that changes when the TTL should restart (e.g. the shard's `expiresAt`). */
  renewKey?: pulumi.Input<string>;
}

/** The registration of one shard with the runtime; `pulumi destroy` deregisters it. */
export class ShardRegistration extends pulumi.dynamic.Resource {
  /** The shard's own bearer token (secret). */
  declare readonly shardToken: pulumi.Output<string>;
  /** When the registration expires unless renewed by another `pulumi up`. */
  declare readonly expiresAt: pulumi.Output<string>;

  constructor(name: string, args: ShardRegistrationArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      shardRegistrationProvider,
      name,
      { ...args, token: pulumi.secret(args.token), shardToken: undefined, expiresAt: undefined },
      pulumi.mergeOptions(opts, { additionalSecretOutputs: ["shardToken", "token"] }),
      "shardworks",
      "ShardRegistration",
    );
  }
}

/**
 * The `register` seam of `DevShard` (`DevShardArgs.register`): registers the shard with the
 * scheduler API at `apiUrl` using the platform `token`.
 */
export function registerShardWith(api: {
  apiUrl: pulumi.Input<string>;
  token: pulumi.Input<string>;
}): (input: ShardRegistrationInput, opts: pulumi.CustomResourceOptions) => ShardRegistration {
  return (input, opts) =>
    new ShardRegistration(
      `${input.name}-registration`,
      {
        apiUrl: api.apiUrl,
        token: api.token,
        name: input.name,
        routingKey: input.routingKey,
        owner: input.owner,
        forks: input.forkDestinations,
        ttlSeconds: input.ttlSeconds,
        // No renewKey: a shard's expiry is fixed when it is created (DevShard keeps its
        // expires-at annotation), so a later `pulumi up` with nothing changed changes nothing.
      },
      opts,
    );
}
