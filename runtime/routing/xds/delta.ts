/**
 * The ADS incremental (delta) protocol (go-control-plane `pkg/server/delta/v3`): per type, the
 * client subscribes and unsubscribes by name (or wildcard), and receives only resources whose
 * version (content hash) differs from what it holds, plus the names of removed ones.
 */
import type * as grpc from "@grpc/grpc-js";
import type { XdsNode } from "./cache";
import { PUSH_ORDER, WILDCARD_TYPES, type AnyMessage, type TypeUrl } from "./protos";
import { acknowledge, type AckState, type StreamContext } from "./stream";

/** A DeltaDiscoveryRequest as proto-loader decodes it. */
export interface DeltaDiscoveryRequest {
  node: (XdsNode & Record<string, unknown>) | null;
  type_url: string;
  resource_names_subscribe: string[];
  resource_names_unsubscribe: string[];
  initial_resource_versions: Record<string, string>;
  response_nonce: string;
  error_detail: { code: number; message: string } | null;
}

/** A DeltaDiscoveryResponse as proto-loader encodes it. */
export interface DeltaDiscoveryResponse {
  system_version_info: string;
  resources: { name: string; version: string; resource: AnyMessage }[];
  type_url: string;
  removed_resources: string[];
  nonce: string;
}

/** Per delta stream and type: the subscription and what the client holds. */
interface DeltaTypeState extends AckState {
  wildcard: boolean;
  subscribed: Set<string>;
  /** name → version the client holds (as sent; a NACK is logged, not re-sent). */
  known: Map<string, string>;
}

/** Serve one delta stream (`DeltaAggregatedResources`). */
export function serveDelta(
  ctx: StreamContext,
  call: grpc.ServerDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>,
): void {
  const streamId = ctx.nextStreamId();
  const types = new Map<TypeUrl, DeltaTypeState>();
  const client = { streamId, node: {} as XdsNode & Record<string, unknown>, delta: true, types };
  ctx.streams.set(streamId, client);
  let node: XdsNode = {};
  let nonce = 0;
  let open = true;
  const log = ctx.logger.child({ streamId, delta: true });
  ctx.events.emit("stream-open", { streamId });

  const watch = (typeUrl: TypeUrl, state: DeltaTypeState): void => {
    state.cancel?.();
    let answered = false;
    const cancel = ctx.cache.createDeltaWatch(
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
          subscribe.includes("*") || (subscribe.length === 0 && WILDCARD_TYPES.includes(typeUrl)),
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
    acknowledge(ctx.events, request, state, { streamId, nodeId: node.id ?? "", typeUrl, log });
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
    ctx.streams.delete(streamId);
    ctx.calls.delete(call);
    ctx.events.emit("stream-close", { streamId });
  };
  ctx.calls.add(call);
  call.on("end", () => {
    finish();
    call.end();
  });
  call.on("error", finish);
  call.on("cancelled", finish);
  call.on("close", finish);
}
