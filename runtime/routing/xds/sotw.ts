/**
 * The ADS state-of-the-world protocol (go-control-plane `pkg/server/sotw/v3`): per type, each
 * response carries every resource the client subscribed to, and a request names the whole
 * subscription. Responses are pushed in an order that never routes to a cluster the client
 * does not hold.
 */
import type * as grpc from "@grpc/grpc-js";
import { isWildcard, type WatchResponse, type XdsNode } from "./cache";
import { PUSH_ORDER, TypeUrl as TypeUrlValues, type AnyMessage, type TypeUrl } from "./protos";
import { acknowledge, type AckState, type StreamContext } from "./stream";

/** A DiscoveryRequest as proto-loader decodes it (keepCase, defaults). */
export interface DiscoveryRequest {
  version_info: string;
  node: (XdsNode & Record<string, unknown>) | null;
  resource_names: string[];
  type_url: string;
  response_nonce: string;
  error_detail: { code: number; message: string } | null;
}

/** A DiscoveryResponse as proto-loader encodes it. */
export interface DiscoveryResponse {
  version_info: string;
  resources: AnyMessage[];
  type_url: string;
  nonce: string;
}

/** Per SotW stream and type: {@link AckState} and the subscribed names. */
export interface TypeState extends AckState {
  names: readonly string[];
}

/** Serve one state-of-the-world stream (`StreamAggregatedResources`). */
export function serveSotw(
  ctx: StreamContext,
  call: grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>,
): void {
  const streamId = ctx.nextStreamId();
  const types = new Map<TypeUrl, TypeState>();
  const client = { streamId, node: {} as XdsNode & Record<string, unknown>, delta: false, types };
  ctx.streams.set(streamId, client);
  ctx.calls.add(call);
  let node: XdsNode = {};
  let nonce = 0;
  const log = ctx.logger.child({ streamId });
  ctx.events.emit("stream-open", { streamId });

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
    if (!ctx.streams.has(streamId)) return;
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
      log.warn({ typeUrl: request.type_url }, "xDS request for a type this server does not serve");
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
      const result = acknowledge(ctx.events, request, state, context);
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
    const cancel = ctx.cache.createWatch(
      {
        node,
        typeUrl,
        versionInfo: request.version_info,
        resourceNames: names,
        force,
        ...(state.rejectedVersion === undefined ? {} : { rejectedVersion: state.rejectedVersion }),
      },
      (response) => {
        answered = true;
        send(current, response);
      },
    );
    if (!answered) state.cancel = cancel;
  });

  const finish = (): void => {
    if (!ctx.streams.has(streamId)) return;
    for (const state of types.values()) state.cancel?.();
    ctx.streams.delete(streamId);
    ctx.calls.delete(call);
    ctx.events.emit("stream-close", { streamId });
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

/** Types whose responses must reach a client before listeners and routes that use them. */
const CLUSTER_TYPES: readonly string[] = [TypeUrlValues.Cluster, TypeUrlValues.Endpoint];

function sameNames(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((n, i) => n === b[i]);
}
