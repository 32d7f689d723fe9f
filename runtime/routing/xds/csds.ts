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
import * as protoLoader from "@grpc/proto-loader";
import type { XdsNode } from "./cache";
import { PROTO_INCLUDE_DIRS, type TypeUrl } from "./protos";
import type { AckState, StreamClient } from "./server";

/** The version of a type a node should hold now (its current snapshot's), if there is one. */
export type CurrentVersion = (node: XdsNode, typeUrl: TypeUrl) => string | undefined;

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

const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [...PROTO_INCLUDE_DIRS],
};

/** The CSDS service definition (server and client share it). */
export function clientStatusService(): grpc.ServiceDefinition {
  const definition = protoLoader.loadSync("envoy/service/status/v3/csds.proto", LOADER_OPTIONS);
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    envoy: {
      service: { status: { v3: { ClientStatusDiscoveryService: grpc.ServiceClientConstructor } } };
    };
  };
  return loaded.envoy.service.status.v3.ClientStatusDiscoveryService.service;
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

/** The status of one type of one stream, the same for every resource of it (versions are per type). */
function typeStatus(state: Readonly<AckState>, current: string | undefined): ConfigStatus {
  if (state.nonce === "") return ConfigStatus.NotSent;
  if (state.pending) return ConfigStatus.Stale;
  if (state.rejectedVersion === state.sentVersion) return ConfigStatus.Error;
  // ACKed, but the cache holds a newer version that is not on its way yet.
  return current === undefined || state.ackedVersion === current
    ? ConfigStatus.Synced
    : ConfigStatus.NotSent;
}

/** What CSDS says of one stream. */
export function clientConfig(
  client: StreamClient,
  currentVersion: CurrentVersion,
  includeContents: boolean,
): ClientConfig {
  const configs: GenericXdsConfig[] = [];
  for (const [typeUrl, state] of client.types) {
    const status = typeStatus(state, currentVersion(client.node, typeUrl));
    const sent = state.nonce !== "";
    const resourceStatus: ClientResourceStatus =
      status === ConfigStatus.Error
        ? ClientResourceStatus.Nacked
        : status === ConfigStatus.Stale || !sent
          ? ClientResourceStatus.Requested
          : ClientResourceStatus.Acked;
    const common = {
      type_url: typeUrl,
      version_info: state.sentVersion,
      last_updated: timestamp(state.sentAt),
      config_status: status,
      error_state:
        status === ConfigStatus.Error && state.rejection
          ? { details: state.rejection.detail, version_info: state.rejectedVersion ?? "" }
          : null,
    };
    for (const resource of state.held.values()) {
      configs.push({
        ...common,
        name: resource.name,
        client_status: resourceStatus,
        xds_config: includeContents ? resource.any : null,
      });
    }
    // Asked for by name but not in what was sent: the client learns it does not exist.
    for (const name of state.requested) {
      if (state.held.has(name)) continue;
      configs.push({
        ...common,
        name,
        client_status: sent ? ClientResourceStatus.DoesNotExist : ClientResourceStatus.Requested,
      });
    }
    // Nothing to name (a wildcard subscription with no resources): report the type as a whole.
    if (state.held.size === 0 && state.requested.length === 0) {
      configs.push({ ...common, name: "", client_status: resourceStatus });
    }
  }
  return { node: client.node, generic_xds_configs: configs };
}

/** Serve CSDS on `server` from the streams `clients()` lists. */
export function addClientStatusService(
  server: grpc.Server,
  clients: () => readonly StreamClient[],
  currentVersion: CurrentVersion,
): void {
  const answer = (request: ClientStatusRequest) => ({
    config: clients()
      .filter((c) => matches(request, c.node))
      .map((c) => clientConfig(c, currentVersion, !request.exclude_resource_contents)),
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
          call.destroy(fail(error));
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
      query.signal?.addEventListener("abort", () => call.cancel(), { once: true });
    });
  } finally {
    client.close();
  }
}
