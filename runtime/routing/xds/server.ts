/**
 * The ADS server (go-control-plane `pkg/server/v3`): gRPC, one bidirectional stream per client
 * carrying every resource type, in either protocol: state of the world
 * (`StreamAggregatedResources`, `sotw.ts`) or incremental (`DeltaAggregatedResources`,
 * `delta.ts`). Per stream and type it keeps the last nonce sent, the version sent, the version the
 * client last ACKed and the version it NACKed (`stream.ts`); it sees the cache only through
 * {@link ConfigWatcher}. It also serves gRPC health and, given the current snapshot, CSDS.
 */
import * as grpc from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";
import { EventEmitter } from "node:events";
import { logger as rootLogger, type Logger } from "../../lib/logger";
import type { ConfigWatcher } from "./cache";
import { addClientStatusService, type CurrentSnapshot } from "./csds";
import { serveDelta, type DeltaDiscoveryRequest, type DeltaDiscoveryResponse } from "./delta";
import { adsService, type TypeUrl } from "./protos";
import { serveSotw, type DiscoveryRequest, type DiscoveryResponse } from "./sotw";
import type { AckState, StreamClient, StreamContext, XdsServerEvents } from "./stream";

/** The ADS service's name, as health checks name it. */
export const ADS_SERVICE_NAME = "envoy.service.discovery.v3.AggregatedDiscoveryService";

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

/** ADS over gRPC, answering from a {@link ConfigWatcher}. */
export class XdsServer {
  /** ACK/NACK and stream lifecycle, for metrics, tests and the bench. */
  readonly events = new EventEmitter<XdsServerEvents>();
  readonly #currentSnapshot: CurrentSnapshot | undefined;
  readonly #streams = new Map<number, StreamClient>();
  readonly #calls = new Set<{ end(): void }>();
  /** What the protocol handlers use of this server. */
  readonly #context: StreamContext;
  #server: grpc.Server | undefined;
  #health: HealthImplementation | undefined;
  #nextStream = 0;

  constructor(cache: ConfigWatcher, options: XdsServerOptions = {}) {
    this.#currentSnapshot = options.currentSnapshot;
    this.#context = {
      cache,
      logger: (options.logger ?? rootLogger).child({ component: "xds-server" }),
      events: this.events,
      streams: this.#streams,
      calls: this.#calls,
      nextStreamId: () => ++this.#nextStream,
    };
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
      ) => serveSotw(this.#context, call),
      DeltaAggregatedResources: (
        call: grpc.ServerDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>,
      ) => serveDelta(this.#context, call),
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
}
