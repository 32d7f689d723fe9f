/**
 * What the two ADS protocols (state of the world in `sotw.ts`, delta in `delta.ts`) share: the
 * per-stream, per-type ACK state, how a request's ACK or NACK is read, and the server's registry
 * of open streams and its events (`server.ts`).
 */
import type { EventEmitter } from "node:events";
import type { Logger } from "../../lib/logger";
import type { ConfigWatcher, XdsNode } from "./cache";
import type { TypeUrl } from "./protos";
import type { XdsResource } from "./resource";

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

/** What the server knows of one open stream: its node and, per type, what was sent and ACKed. */
export interface StreamClient {
  readonly streamId: number;
  /** The node of the stream's latest request that carried one (as decoded, with metadata). */
  readonly node: XdsNode & Record<string, unknown>;
  readonly delta: boolean;
  readonly types: ReadonlyMap<TypeUrl, Readonly<AckState>>;
}

/** Events of {@link XdsServer}: `ack`, `nack`, `stream-open`, `stream-close`. */
export interface XdsServerEvents {
  ack: [AckEvent];
  nack: [NackEvent];
  "stream-open": [{ streamId: number }];
  "stream-close": [{ streamId: number }];
}

/** What a protocol handler uses of the server for its streams. */
export interface StreamContext {
  readonly cache: ConfigWatcher;
  readonly logger: Logger;
  readonly events: EventEmitter<XdsServerEvents>;
  /** Open streams by id (what `clients()` and CSDS report). */
  readonly streams: Map<number, StreamClient>;
  /** Open calls (`close()` ends them). */
  readonly calls: Set<{ end(): void }>;
  /** The id of a new stream. */
  nextStreamId(): number;
}

/**
 * The ACK or NACK a request carries for the last response of its type (the part of the
 * protocol the SotW and delta streams share). `none`: the request answers no response; `stale`:
 * it answers an older response (a newer one is on its way); else what the client did, recorded
 * in `state`, logged (NACK) and emitted.
 */
export function acknowledge(
  events: EventEmitter<XdsServerEvents>,
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
    events.emit("nack", { ...event, error: request.error_detail.message });
    return "nack";
  }
  state.ackedVersion = state.sentVersion;
  state.lastAnswer = "ack";
  events.emit("ack", event);
  return "ack";
}
