/**
 * The ADS server, state of the world (go-control-plane `pkg/server/sotw/v3`): one bidirectional
 * `StreamAggregatedResources` stream per client carrying every resource type. Per stream and type it
 * keeps the last nonce sent, the version sent, the version the client last ACKed and the version it
 * NACKed; it sees the cache only through {@link ConfigWatcher}.
 */
import * as grpc from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";
import { EventEmitter } from "node:events";
import { logger as rootLogger, type Logger } from "../../lib/logger";
import { isWildcard, type ConfigWatcher, type WatchResponse, type XdsNode } from "./cache";
import { addClientStatusService, type CurrentSnapshot } from "./csds";
import type { XdsResource } from "./snapshot";
import {
  adsService,
  PUSH_ORDER,
  TypeUrl as TypeUrlValues,
  type AnyMessage,
  type TypeUrl,
} from "./protos";

/** The ADS service's name, as health checks name it. */
export const ADS_SERVICE_NAME = "envoy.service.discovery.v3.AggregatedDiscoveryService";

/** A DiscoveryRequest as proto-loader decodes it (keepCase, defaults). */
interface DiscoveryRequest {
  version_info: string;
  node: (XdsNode & Record<string, unknown>) | null;
  resource_names: string[];
  type_url: string;
  response_nonce: string;
  error_detail: { code: number; message: string } | null;
}

/** A DiscoveryResponse as proto-loader encodes it. */
interface DiscoveryResponse {
  version_info: string;
  resources: AnyMessage[];
  type_url: string;
  nonce: string;
}

/** A DeltaDiscoveryRequest as proto-loader decodes it. */
interface DeltaDiscoveryRequest {
  node: (XdsNode & Record<string, unknown>) | null;
  type_url: string;
  resource_names_subscribe: string[];
  resource_names_unsubscribe: string[];
  initial_resource_versions: Record<string, string>;
  response_nonce: string;
  error_detail: { code: number; message: string } | null;
}

/** A DeltaDiscoveryResponse as proto-loader encodes it. */
interface DeltaDiscoveryResponse {
  system_version_info: string;
  resources: { name: string; version: string; resource: AnyMessage }[];
  type_url: string;
  removed_resources: string[];
  nonce: string;
}

/** Per stream and type, SotW or delta: what was sent, ACKed and NACKed. */
export interface AckState {
  /** Nonce of the last response sent ("" before any). */
  nonce: string;
  sentVersion: string;
  ackedVersion: string;
  rejectedVersion?: string;
  /** The last response is not ACKed or NACKed yet. */
  pending: boolean;
  cancel?: () => void;
  /** When the last response was sent (epoch ms). */
  sentAt?: number;
  /** How the client answered the last response it answered (`nack`: it holds the one before). */
  lastAnswer?: "ack" | "nack";
  /** The client's reason and the time of the last NACK. */
  rejection?: { readonly detail: string; readonly at: number };
  /** The names the client asked for; empty with `wildcard`. */
  requested: readonly string[];
  /** Subscribed to every resource of the type. */
  wildcard: boolean;
  /** SotW: the resources of the last response (the cache's own array, not a copy). */
  sent?: readonly XdsResource[];
  /** Delta: name → content hash of each resource the client holds. */
  known?: ReadonlyMap<string, string>;
}

/** Per delta stream and type: the subscription and what the client holds. */
interface DeltaTypeState extends AckState {
  wildcard: boolean;
  subscribed: Set<string>;
  /** name → version the client holds (as sent; a NACK is logged, not re-sent). */
  known: Map<string, string>;
}

/** What a client did with a response. */
export interface AckEvent {
  readonly streamId: number;
  readonly nodeId: string;
  readonly typeUrl: TypeUrl;
  readonly version: string;
  readonly nonce: string;
}
/** A rejected response and the client's reason. */
export interface NackEvent extends AckEvent {
  readonly error: string;
}

/** Per SotW stream and type: {@link AckState} and the subscribed names. */
export interface TypeState extends AckState {
  names: readonly string[];
}

/** What the server knows of one open stream: its node and, per type, what was sent and ACKed. */
export interface StreamClient {
  readonly streamId: number;
  /** The node of the stream's latest request that carried one (as decoded, with metadata). */
  readonly node: XdsNode & Record<string, unknown>;
  readonly delta: boolean;
  readonly types: ReadonlyMap<TypeUrl, Readonly<AckState>>;
}

/** Options of {@link XdsServer}. */
export interface XdsServerOptions {
  logger?: Logger;
  /**
   * The snapshot a node should hold now (the cache's). With it, the server also answers Envoy's
   * Client Status Discovery Service (CSDS) on the same port, so operators and the rollout's xDS
   * gate can ask whether each client ACKed the current configuration.
   */
  currentSnapshot?: CurrentSnapshot;
}

/** Events of {@link XdsServer}: `ack`, `nack`, `stream-open`, `stream-close`. */
export interface XdsServerEvents {
  ack: [AckEvent];
  nack: [NackEvent];
  "stream-open": [{ streamId: number }];
  "stream-close": [{ streamId: number }];
}

/** ADS over gRPC, answering from a {@link ConfigWatcher}. */
export class XdsServer {
  /** ACK/NACK and stream lifecycle, for metrics, tests and the bench. */
  readonly events = new EventEmitter<XdsServerEvents>();
  readonly #cache: ConfigWatcher;
  readonly #logger: Logger;
  readonly #currentSnapshot: CurrentSnapshot | undefined;
  readonly #streams = new Map<number, StreamClient & { node: XdsNode & Record<string, unknown> }>();
  readonly #calls = new Set<grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>>();
  #server: grpc.Server | undefined;
  #health: HealthImplementation | undefined;
  #nextStream = 0;

  constructor(cache: ConfigWatcher, options: XdsServerOptions = {}) {
    this.#cache = cache;
    this.#logger = (options.logger ?? rootLogger).child({ component: "xds-server" });
    this.#currentSnapshot = options.currentSnapshot;
  }

  /** Listen on `host:port` (port 0 = any free port); resolves to the bound port. */
  async listen(port: number, host = "127.0.0.1"): Promise<number> {
    // Keepalive pings find streams whose client vanished without closing (a lost node), so they
    // do not linger in the stream list (and in CSDS) until TCP gives up.
    const server = new grpc.Server({
      "grpc.keepalive_time_ms": 30_000,
      "grpc.keepalive_timeout_ms": 10_000,
    });
    server.addService(adsService(), {
      StreamAggregatedResources: (
        call: grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>,
      ) => this.#serve(call),
      DeltaAggregatedResources: (
        call: grpc.ServerDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>,
      ) => this.#serveDelta(call),
    });
    // grpc.health.v1 on the same port: the Kubernetes gRPC readiness probe asks it.
    this.#health = new HealthImplementation({ "": "SERVING", [ADS_SERVICE_NAME]: "SERVING" });
    this.#health.addToServer(server);
    if (this.#currentSnapshot)
      addClientStatusService(server, () => this.clients(), this.#currentSnapshot);
    const bound = await new Promise<number>((resolve, reject) => {
      server.bindAsync(`${host}:${port}`, grpc.ServerCredentials.createInsecure(), (error, p) =>
        error ? reject(error) : resolve(p),
      );
    });
    this.#server = server;
    return bound;
  }

  /** The ACK state of every open stream, SotW and delta (stream id → type → state), for tests. */
  streamStates(): ReadonlyMap<number, ReadonlyMap<TypeUrl, Readonly<AckState>>> {
    return new Map([...this.#streams].map(([id, client]) => [id, client.types]));
  }

  /** Every open stream with its node and per-type state (what CSDS reports). */
  clients(): readonly StreamClient[] {
    return [...this.#streams.values()];
  }

  /**
   * The ACK or NACK a request carries for the last response of its type (the part of the
   * protocol the SotW and delta streams share). `none`: the request answers no response; `stale`:
   * it answers an older response (a newer one is on its way); else what the client did, recorded
   * in `state`, logged (NACK) and emitted.
   */
  #acknowledge(
    request: { response_nonce: string; error_detail: { code: number; message: string } | null },
    state: AckState,
    context: { streamId: number; nodeId: string; typeUrl: TypeUrl; log: Logger },
  ): "none" | "stale" | "ack" | "nack" {
    if (request.response_nonce === "") return "none";
    if (request.response_nonce !== state.nonce) return "stale";
    // The same nonce again (e.g. a subscription change after an ACK): already counted.
    if (!state.pending) return "none";
    state.pending = false;
    const { streamId, nodeId, typeUrl, log } = context;
    const event = { streamId, nodeId, typeUrl, version: state.sentVersion, nonce: state.nonce };
    if (request.error_detail) {
      state.rejectedVersion = state.sentVersion;
      state.lastAnswer = "nack";
      state.rejection = { detail: request.error_detail.message, at: Date.now() };
      log.warn(
        { nodeId, typeUrl, version: state.sentVersion, error: request.error_detail },
        "client rejected (NACK) an xDS response",
      );
      this.events.emit("nack", { ...event, error: request.error_detail.message });
      return "nack";
    }
    state.ackedVersion = state.sentVersion;
    state.lastAnswer = "ack";
    this.events.emit("ack", event);
    return "ack";
  }

  /** Stop: end every stream and the gRPC server. */
  async close(): Promise<void> {
    this.#health?.setStatus("", "NOT_SERVING");
    this.#health?.setStatus(ADS_SERVICE_NAME, "NOT_SERVING");
    for (const call of this.#calls) call.end();
    const server = this.#server;
    this.#server = undefined;
    if (!server) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        server.forceShutdown();
        resolve();
      }, 2000);
      server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  #serve(call: grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>): void {
    const streamId = ++this.#nextStream;
    const types = new Map<TypeUrl, TypeState>();
    const client = { streamId, node: {} as XdsNode & Record<string, unknown>, delta: false, types };
    this.#streams.set(streamId, client);
    this.#calls.add(call);
    let node: XdsNode = {};
    let nonce = 0;
    const log = this.#logger.child({ streamId });
    this.events.emit("stream-open", { streamId });

    // Responses produced in one turn (a push, or a burst of requests) are written clusters and
    // endpoints first, then listeners and routes, whatever order the requests came in. Across
    // turns too: listeners and routes wait while a cluster or endpoint response of this stream is
    // not ACKed or NACKed yet, so a client never gets a route to a cluster it does not hold.
    let queue: { state: TypeState; response: WatchResponse }[] = [];
    const clustersPending = (): boolean =>
      [TypeUrlValues.Cluster, TypeUrlValues.Endpoint].some((t) => types.get(t)?.pending === true);
    const flush = (): void => {
      const batch = queue.sort(
        (a, b) => PUSH_ORDER.indexOf(a.response.typeUrl) - PUSH_ORDER.indexOf(b.response.typeUrl),
      );
      queue = [];
      if (!this.#streams.has(streamId)) return;
      for (const item of batch) {
        const { state, response } = item;
        if (!CLUSTER_TYPES.includes(response.typeUrl) && clustersPending()) {
          queue.push(item); // held until the clusters are ACKed or NACKed
          continue;
        }
        state.nonce = String(++nonce);
        state.sentVersion = response.version;
        state.pending = true;
        state.sentAt = Date.now();
        state.sent = response.resources;
        call.write({
          version_info: response.version,
          resources: response.resources.map((r) => r.any),
          type_url: response.typeUrl,
          nonce: state.nonce,
        });
      }
    };
    const send = (state: TypeState, response: WatchResponse): void => {
      state.cancel = undefined;
      // A newer answer for the same type replaces a queued one.
      queue = queue.filter((q) => q.state !== state);
      queue.push({ state, response });
      setImmediate(flush);
    };

    call.on("data", (request: DiscoveryRequest) => {
      if (request.node) node = client.node = request.node;
      const typeUrl = request.type_url as TypeUrl;
      if (!PUSH_ORDER.includes(typeUrl)) {
        log.warn(
          { typeUrl: request.type_url },
          "xDS request for a type this server does not serve",
        );
        return;
      }
      let state = types.get(typeUrl);
      // A new stream knows nothing of what the client holds: its first request is always answered,
      // even when it carries a nonce from an earlier stream (a reconnecting client's).
      const isNew = state === undefined;
      if (!state) {
        state = {
          nonce: "",
          sentVersion: "",
          ackedVersion: "",
          pending: false,
          names: [],
          requested: [],
          wildcard: false,
        };
        types.set(typeUrl, state);
      } else {
        const context = { streamId, nodeId: node.id ?? "", typeUrl, log };
        const result = this.#acknowledge(request, state, context);
        if (result === "stale") return;
        // Held listener/route responses go out once the clusters are ACKed or NACKed.
        if (CLUSTER_TYPES.includes(typeUrl) && queue.length > 0) setImmediate(flush);
      }
      const names = [...request.resource_names].sort();
      const force = isNew || !sameNames(names, state.names);
      state.names = names;
      state.requested = names.filter((n) => n !== "*");
      state.wildcard = isWildcard(typeUrl, names);
      state.cancel?.();
      const current = state;
      let answered = false;
      const cancel = this.#cache.createWatch(
        {
          node,
          typeUrl,
          versionInfo: request.version_info,
          resourceNames: names,
          force,
          ...(state.rejectedVersion === undefined
            ? {}
            : { rejectedVersion: state.rejectedVersion }),
        },
        (response) => {
          answered = true;
          send(current, response);
        },
      );
      if (!answered) state.cancel = cancel;
    });

    const finish = (): void => {
      if (!this.#streams.has(streamId)) return;
      for (const state of types.values()) state.cancel?.();
      this.#streams.delete(streamId);
      this.#calls.delete(call);
      this.events.emit("stream-close", { streamId });
    };
    call.on("end", () => {
      finish();
      call.end();
    });
    call.on("error", (error) => {
      log.debug({ err: error }, "xDS stream failed");
      finish();
    });
    call.on("cancelled", finish);
    call.on("close", finish);
  }

  /**
   * Incremental ADS: per type, the client subscribes and unsubscribes by name (or wildcard), and
   * receives only resources whose version (content hash) differs from what it holds, plus the
   * names of removed ones.
   */
  #serveDelta(call: grpc.ServerDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>): void {
    const streamId = ++this.#nextStream;
    const types = new Map<TypeUrl, DeltaTypeState>();
    const client = { streamId, node: {} as XdsNode & Record<string, unknown>, delta: true, types };
    this.#streams.set(streamId, client);
    let node: XdsNode = {};
    let nonce = 0;
    let open = true;
    const log = this.#logger.child({ streamId, delta: true });
    this.events.emit("stream-open", { streamId });

    const watch = (typeUrl: TypeUrl, state: DeltaTypeState): void => {
      state.cancel?.();
      let answered = false;
      const cancel = this.#cache.createDeltaWatch(
        {
          node,
          typeUrl,
          wildcard: state.wildcard,
          subscribed: state.subscribed,
          known: state.known,
        },
        (response) => {
          answered = true;
          state.cancel = undefined;
          if (!open) return;
          state.nonce = String(++nonce);
          state.sentVersion = response.systemVersion;
          state.pending = true;
          state.sentAt = Date.now();
          for (const r of response.resources) state.known.set(r.name, r.hash);
          for (const name of response.removed) state.known.delete(name);
          call.write({
            system_version_info: response.systemVersion,
            resources: response.resources.map((r) => ({
              name: r.name,
              version: r.hash,
              resource: r.any,
            })),
            type_url: typeUrl,
            removed_resources: [...response.removed],
            nonce: state.nonce,
          });
        },
      );
      if (!answered) state.cancel = cancel;
    };

    call.on("data", (request: DeltaDiscoveryRequest) => {
      if (request.node) node = client.node = request.node;
      const typeUrl = request.type_url as TypeUrl;
      if (!PUSH_ORDER.includes(typeUrl)) {
        log.warn(
          { typeUrl: request.type_url },
          "delta xDS request for a type this server does not serve",
        );
        return;
      }
      let state = types.get(typeUrl);
      if (!state) {
        const subscribe = request.resource_names_subscribe;
        state = {
          wildcard:
            subscribe.includes("*") ||
            (subscribe.length === 0 && WILDCARD_BY_DEFAULT.includes(typeUrl)),
          subscribed: new Set(),
          known: new Map(Object.entries(request.initial_resource_versions ?? {})),
          nonce: "",
          sentVersion: "",
          ackedVersion: "",
          pending: false,
          requested: [],
        };
        types.set(typeUrl, state);
      }
      // A stale nonce still carries subscription changes: those are applied below.
      this.#acknowledge(request, state, { streamId, nodeId: node.id ?? "", typeUrl, log });
      for (const name of request.resource_names_subscribe) {
        if (name === "*") state.wildcard = true;
        else state.subscribed.add(name);
      }
      for (const name of request.resource_names_unsubscribe) {
        if (name === "*") state.wildcard = false;
        state.subscribed.delete(name);
        state.known.delete(name);
      }
      state.requested = [...state.subscribed].sort();
      watch(typeUrl, state);
    });

    const finish = (): void => {
      if (!open) return;
      open = false;
      for (const state of types.values()) state.cancel?.();
      this.#streams.delete(streamId);
      this.#calls.delete(
        call as unknown as grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>,
      );
      this.events.emit("stream-close", { streamId });
    };
    this.#calls.add(
      call as unknown as grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>,
    );
    call.on("end", () => {
      finish();
      call.end();
    });
    call.on("error", finish);
    call.on("cancelled", finish);
    call.on("close", finish);
  }
}

/** Types whose responses must reach a client before listeners and routes that use them. */
const CLUSTER_TYPES: readonly string[] = [TypeUrlValues.Cluster, TypeUrlValues.Endpoint];

/** LDS and CDS default to wildcard subscriptions in the delta protocol; RDS and EDS do not. */
const WILDCARD_BY_DEFAULT: readonly string[] = [TypeUrlValues.Listener, TypeUrlValues.Cluster];

function sameNames(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((n, i) => n === b[i]);
}
