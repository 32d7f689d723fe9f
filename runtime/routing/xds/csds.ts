/**
 * Envoy's Client Status Discovery Service (CSDS, `envoy.service.status.v3`) on the management
 * server's side: for every open ADS stream whose node matches the request, each resource the
 * client was sent, the version, and whether the client ACKed it (SYNCED), has not answered yet
 * (STALE), rejected it (ERROR, with the client's reason) or holds an older version than the
 * current snapshot (NOT_SENT). `grpcdebug <host:port> xds status` reads it, and the rollout's
 * `xds-acked` gate asks it whether the gateway took the current configuration.
 *
 * Node matchers: `node_id` with exact, prefix, suffix or contains (and `ignore_case`); several
 * matchers are ORed, none matches every client. Regex and metadata matchers are refused
 * (UNIMPLEMENTED) rather than ignored, so a query never silently matches more than it says.
 */
import * as grpc from "@grpc/grpc-js";
import type { XdsNode } from "./cache";
import { envoyService, type TypeUrl } from "./protos";
import type { AckState, StreamClient } from "./stream";
import type { XdsResource } from "./resource";
import type { Snapshot } from "./snapshot";

/** The snapshot a node should hold now, if there is one. */
export type CurrentSnapshot = (node: XdsNode) => Snapshot | undefined;

/** `envoy.service.status.v3.ConfigStatus`. */
export const ConfigStatus = {
  Synced: "SYNCED",
  NotSent: "NOT_SENT",
  Stale: "STALE",
  Error: "ERROR",
} as const;
export type ConfigStatus = (typeof ConfigStatus)[keyof typeof ConfigStatus];

/** `envoy.admin.v3.ClientResourceStatus`. */
export const ClientResourceStatus = {
  Requested: "REQUESTED",
  DoesNotExist: "DOES_NOT_EXIST",
  Acked: "ACKED",
  Nacked: "NACKED",
} as const;
export type ClientResourceStatus = (typeof ClientResourceStatus)[keyof typeof ClientResourceStatus];

/** `ClientConfig.GenericXdsConfig` as proto-loader encodes and decodes it. */
export interface GenericXdsConfig {
  type_url: string;
  /** The resource's name; "" stands for the whole type when the client holds none of it. */
  name: string;
  version_info: string;
  xds_config?: { type_url: string; value: Uint8Array } | null;
  last_updated?: { seconds: string | number; nanos: number } | null;
  config_status: ConfigStatus | "UNKNOWN";
  client_status: ClientResourceStatus | "UNKNOWN";
  error_state?: { details: string; version_info: string } | null;
}

/** `ClientConfig` as proto-loader encodes and decodes it. */
export interface ClientConfig {
  node: (XdsNode & Record<string, unknown>) | null;
  generic_xds_configs: GenericXdsConfig[];
}

interface StringMatcher {
  match_pattern?: string;
  exact?: string;
  prefix?: string;
  suffix?: string;
  contains?: string;
  ignore_case?: boolean;
}
interface ClientStatusRequest {
  node_matchers: { node_id: StringMatcher | null; node_metadatas: unknown[] }[];
  exclude_resource_contents: boolean;
}

/** The CSDS service definition (server and client share it). */
export function clientStatusService(): grpc.ServiceDefinition {
  return envoyService(
    "envoy/service/status/v3/csds.proto",
    "envoy.service.status.v3.ClientStatusDiscoveryService",
  );
}

/** A CSDS client constructor (the rollout gate and tests ask the controller with it). */
export function clientStatusClientConstructor(): grpc.ServiceClientConstructor {
  return grpc.makeGenericClientConstructor(clientStatusService(), "ClientStatusDiscoveryService");
}

/** A matcher we cannot honour: refused with UNIMPLEMENTED, never ignored. */
class UnsupportedMatcher extends Error {}

/** Whether a `StringMatcher` matches `value`. */
function matchString(matcher: StringMatcher, value: string): boolean {
  const fold = (s: string) => (matcher.ignore_case ? s.toLowerCase() : s);
  const v = fold(value);
  switch (matcher.match_pattern) {
    case "exact":
      return v === fold(matcher.exact ?? "");
    case "prefix":
      return v.startsWith(fold(matcher.prefix ?? ""));
    case "suffix":
      return v.endsWith(fold(matcher.suffix ?? ""));
    case "contains":
      return v.includes(fold(matcher.contains ?? ""));
    default:
      throw new UnsupportedMatcher(
        `node_id matcher "${matcher.match_pattern ?? "none"}" is not supported; use exact, prefix, suffix or contains`,
      );
  }
}

/** Whether a client's node matches the request (OR over the matchers; none = all). */
function matches(request: ClientStatusRequest, node: XdsNode): boolean {
  if (request.node_matchers.length === 0) return true;
  return request.node_matchers.some((m) => {
    if (m.node_metadatas.length > 0) {
      throw new UnsupportedMatcher("node_metadatas matchers are not supported; match on node_id");
    }
    return m.node_id === null || matchString(m.node_id, node.id ?? "");
  });
}

function timestamp(ms: number | undefined): GenericXdsConfig["last_updated"] {
  if (ms === undefined) return null;
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 };
}

/** Where a type of a stream stands, whatever the resource: not sent, not answered, rejected. */
function answered(state: Readonly<AckState>): ConfigStatus | undefined {
  if (state.nonce === "") return ConfigStatus.NotSent;
  if (state.pending) return ConfigStatus.Stale;
  // A NACK leaves the client on what it had; a later ACK (of a newer or re-sent version) clears it.
  if (state.lastAnswer === "nack") return ConfigStatus.Error;
  return undefined;
}

/** What the client did with a resource, given the status and whether it holds something of it. */
function clientStatusOf(status: ConfigStatus, holds: boolean): ClientResourceStatus {
  if (status === ConfigStatus.Error) return ClientResourceStatus.Nacked;
  if (status === ConfigStatus.Stale || !holds) return ClientResourceStatus.Requested;
  return ClientResourceStatus.Acked;
}

/** One resource line of CSDS. */
interface Line {
  readonly name: string;
  readonly status: ConfigStatus;
  readonly client: ClientResourceStatus;
  readonly resource?: XdsResource;
}

/**
 * State of the world: versions are per type. The client is SYNCED when it ACKed the version of
 * the current snapshot; every resource of the last response shares that status. Names asked for
 * and not sent do not exist (for the client).
 */
function sotwLines(
  state: Readonly<AckState>,
  current: Snapshot | undefined,
  typeUrl: TypeUrl,
): Line[] {
  const sent = state.sent ?? [];
  const early = answered(state);
  const status =
    early ??
    (current === undefined || state.ackedVersion === current.version(typeUrl)
      ? ConfigStatus.Synced
      : ConfigStatus.NotSent);
  const client = clientStatusOf(status, state.nonce !== "");
  const lines: Line[] = sent.map((resource) => ({ name: resource.name, status, client, resource }));
  const names = new Set(sent.map((r) => r.name));
  for (const name of state.requested) {
    if (names.has(name)) continue;
    lines.push({
      name,
      status,
      client:
        state.nonce === "" ? ClientResourceStatus.Requested : ClientResourceStatus.DoesNotExist,
    });
  }
  return lines;
}

/**
 * Delta: versions are per resource (content hashes), and an unchanged resource is never re-sent,
 * so each resource the client holds is SYNCED when its hash is the current snapshot's; one the
 * snapshot has (and the client subscribes to) but the client does not hold is NOT_SENT.
 */
function deltaLines(
  state: Readonly<AckState>,
  current: Snapshot | undefined,
  typeUrl: TypeUrl,
): Line[] {
  const known = state.known ?? new Map<string, string>();
  // Nothing sent on this stream yet: a reconnecting client may hold everything already (its
  // initial_resource_versions), and then nothing needs sending; judge what it holds by hash.
  const early = state.nonce === "" ? undefined : answered(state);
  const resources = current?.resources(typeUrl) ?? new Map<string, XdsResource>();
  const lines: Line[] = [];
  for (const [name, hash] of known) {
    const resource = resources.get(name);
    const status = early ?? (resource?.hash === hash ? ConfigStatus.Synced : ConfigStatus.NotSent);
    lines.push({
      name,
      status,
      client: clientStatusOf(status, true),
      ...(resource ? { resource } : {}),
    });
  }
  const wanted = state.wildcard ? [...resources.keys()] : state.requested;
  for (const name of wanted) {
    if (known.has(name)) continue;
    const exists = resources.has(name);
    lines.push({
      name,
      status: early === ConfigStatus.Stale ? early : ConfigStatus.NotSent,
      client:
        exists || state.nonce === ""
          ? ClientResourceStatus.Requested
          : ClientResourceStatus.DoesNotExist,
    });
  }
  return lines;
}

/** What CSDS says of one stream. */
export function clientConfig(
  client: StreamClient,
  currentSnapshot: CurrentSnapshot,
  includeContents: boolean,
): ClientConfig {
  const current = currentSnapshot(client.node);
  const configs: GenericXdsConfig[] = [];
  for (const [typeUrl, state] of client.types) {
    const lines = client.delta
      ? deltaLines(state, current, typeUrl)
      : sotwLines(state, current, typeUrl);
    // Nothing to name (a wildcard subscription and nothing sent): report the type as a whole. A
    // delta client that holds nothing of a type that has nothing is in step.
    if (lines.length === 0) {
      const status =
        client.delta && state.nonce === ""
          ? ConfigStatus.Synced
          : (answered(state) ?? ConfigStatus.Synced);
      lines.push({
        name: "",
        status,
        client: clientStatusOf(status, client.delta || state.nonce !== ""),
      });
    }
    for (const line of lines) {
      configs.push({
        type_url: typeUrl,
        name: line.name,
        version_info: client.delta ? (state.known?.get(line.name) ?? "") : state.sentVersion,
        last_updated: timestamp(state.sentAt),
        config_status: line.status,
        client_status: line.client,
        xds_config: includeContents && line.resource ? line.resource.any : null,
        error_state:
          line.status === ConfigStatus.Error && state.rejection
            ? { details: state.rejection.detail, version_info: state.rejectedVersion ?? "" }
            : null,
      });
    }
  }
  return { node: client.node, generic_xds_configs: configs };
}

/** Serve CSDS on `server` from the streams `clients()` lists. */
export function addClientStatusService(
  server: grpc.Server,
  clients: () => readonly StreamClient[],
  currentSnapshot: CurrentSnapshot,
): void {
  const answer = (request: ClientStatusRequest) => ({
    config: clients()
      .filter((c) => matches(request, c.node))
      .map((c) => clientConfig(c, currentSnapshot, !request.exclude_resource_contents)),
  });
  const fail = (error: unknown): grpc.ServiceError => {
    const unsupported = error instanceof UnsupportedMatcher;
    return Object.assign(new Error((error as Error).message), {
      code: unsupported ? grpc.status.UNIMPLEMENTED : grpc.status.INTERNAL,
      details: (error as Error).message,
      metadata: new grpc.Metadata(),
    });
  };
  server.addService(clientStatusService(), {
    FetchClientStatus: (
      call: grpc.ServerUnaryCall<ClientStatusRequest, unknown>,
      callback: grpc.sendUnaryData<unknown>,
    ) => {
      try {
        callback(null, answer(call.request));
      } catch (error) {
        callback(fail(error));
      }
    },
    StreamClientStatus: (call: grpc.ServerDuplexStream<ClientStatusRequest, unknown>) => {
      call.on("data", (request: ClientStatusRequest) => {
        try {
          call.write(answer(request));
        } catch (error) {
          // `destroy` would end the stream without a status; `error` ends it with this one.
          call.emit("error", fail(error));
        }
      });
      call.on("end", () => call.end());
    },
  });
}

/** What {@link fetchClientStatus} asks for. */
export interface ClientStatusQuery {
  /** Only clients whose node id is exactly this (default: every client). */
  readonly nodeId?: string;
  /** Include each resource (`xds_config`); default false. */
  readonly includeContents?: boolean;
  /** Give up after this long; default 5000 ms. */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

/** Ask the CSDS of the management server at `address` (`host:port`, plaintext) once. */
export async function fetchClientStatus(
  address: string,
  query: ClientStatusQuery = {},
): Promise<ClientConfig[]> {
  const Client = clientStatusClientConstructor();
  const client = new Client(address, grpc.credentials.createInsecure());
  const request = {
    node_matchers: query.nodeId === undefined ? [] : [{ node_id: { exact: query.nodeId } }],
    exclude_resource_contents: !(query.includeContents ?? false),
  };
  try {
    return await new Promise<ClientConfig[]>((resolve, reject) => {
      const call = (
        client as unknown as {
          FetchClientStatus(
            r: typeof request,
            o: grpc.CallOptions,
            cb: (e: grpc.ServiceError | null, r?: { config: ClientConfig[] }) => void,
          ): grpc.ClientUnaryCall;
        }
      ).FetchClientStatus(
        request,
        { deadline: Date.now() + (query.timeoutMs ?? 5000) },
        (error, response) => (error ? reject(error) : resolve(response?.config ?? [])),
      );
      const cancel = () => call.cancel();
      query.signal?.addEventListener("abort", cancel, { once: true });
      call.on("status", () => query.signal?.removeEventListener("abort", cancel));
    });
  } finally {
    client.close();
  }
}
