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

interface ShardReply {
  shard?: { expiresAt: string };
  token?: string;
  error?: { code: string; message: string };
}

async function callApi(
  props: Pick<ShardRegistrationProps, "apiUrl" | "token" | "name">,
  method: "GET" | "PUT" | "DELETE",
  body?: unknown,
): Promise<{ status: number; reply: ShardReply }> {
  const url = `${props.apiUrl.replace(/\/+$/, "")}/v1/shards/${encodeURIComponent(props.name)}`;
  let response: Response;
  try {
    response = await fetch(url, {
      method,
      headers: { authorization: `Bearer ${props.token}`, "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  } catch (error) {
    throw new Error(`cannot reach the shard API at ${props.apiUrl}: ${String(error)}`, {
      cause: error,
    });
  }
  const text = await response.text();
  let reply: ShardReply = {};
  try {
    reply = text ? (JSON.parse(text) as ShardReply) : {};
  } catch {
    reply = { error: { code: "bad_reply", message: text.slice(0, 200) } };
  }
  return { status: response.status, reply };
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

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const ROUTING_KEY = /^[a-z0-9][a-z0-9-]{3,63}$/;
const DESTINATION = /^[A-Za-z0-9.-]+:[0-9]{1,5}$/;

/** The provider behind {@link ShardRegistration} (exported so it can be tested directly). */
export const shardRegistrationProvider: pulumi.dynamic.ResourceProvider<
  ShardRegistrationProps,
  ShardRegistrationOutputs
> = {
  // check() runs at preview: the same rules as the API, so mistakes show before anything changes.
  check(_olds, news) {
    const failures: pulumi.dynamic.CheckFailure[] = [];
    const fail = (property: string, reason: string) => failures.push({ property, reason });
    if (!/^https?:\/\//.test(String(news.apiUrl))) fail("apiUrl", "must be an http(s) URL");
    if (!news.token) fail("token", "the platform token is required");
    if (!DNS_LABEL.test(String(news.name)) || String(news.name).length > 63) {
      fail("name", "must be a DNS label (lowercase letters, digits, '-')");
    }
    if (!ROUTING_KEY.test(String(news.routingKey))) {
      fail("routingKey", "must be 4-32 lowercase letters, digits and '-'");
    }
    if (!news.owner) fail("owner", "is required");
    for (const [service, destination] of Object.entries(news.forks ?? {})) {
      if (!DNS_LABEL.test(service)) fail(`forks.${service}`, "service must be a DNS label");
      if (!DESTINATION.test(destination))
        fail(`forks.${service}`, 'destination must be "host:port"');
    }
    if (!Number.isInteger(news.ttlSeconds) || news.ttlSeconds < 1) {
      fail("ttlSeconds", "must be a positive whole number of seconds");
    }
    return Promise.resolve(failures.length ? { inputs: news, failures } : { inputs: news });
  },

  async create(inputs) {
    const existing = await callApi(inputs, "GET");
    if (existing.status === 200) {
      throw new Error(
        `shard "${inputs.name}" is already registered; delete it ('DELETE /v1/shards/${inputs.name}') or choose another name`,
      );
    }
    const { status, reply } = await callApi(inputs, "PUT", shardBody(inputs));
    if (status !== 201 || !reply.token || !reply.shard) {
      throw failure("registering", inputs.name, status, reply);
    }
    return {
      id: inputs.name,
      outs: { ...inputs, shardToken: reply.token, expiresAt: reply.shard.expiresAt },
    };
  },

  diff(_id, olds, news) {
    const fields = ["routingKey", "owner", "ttlSeconds", "renewKey", "apiUrl", "token"] as const;
    const changed: string[] = fields.filter((f) => olds[f] !== news[f]);
    if (JSON.stringify(sorted(olds.forks)) !== JSON.stringify(sorted(news.forks))) {
      changed.push("forks");
    }
    const replaces = olds.name !== news.name ? ["name"] : [];
    return Promise.resolve({
      changes: changed.length > 0 || replaces.length > 0,
      replaces,
      // A routing key is unique across shards: the old registration must go first.
      deleteBeforeReplace: true,
    });
  },

  async update(_id, olds, news) {
    const { status, reply } = await callApi(news, "PUT", shardBody(news));
    if (status !== 200 || !reply.shard) throw failure("updating", news.name, status, reply);
    return { outs: { ...news, shardToken: olds.shardToken, expiresAt: reply.shard.expiresAt } };
  },

  async delete(_id, props) {
    const { status, reply } = await callApi(props, "DELETE");
    // Already gone (reaped at its TTL, or deleted by hand) is what delete wants.
    if (status !== 204 && status !== 404) throw failure("deregistering", props.name, status, reply);
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
        renewKey: input.expiresAt,
      },
      opts,
    );
}
