/**
 * The per-node snapshot cache (go-control-plane `pkg/cache/v3/simple.go`). `setSnapshot` is the
 * only way a producer pushes; the server opens watches, and the cache answers a watch as soon as it
 * holds a version the client has not seen (and has not rejected).
 */
import { PUSH_ORDER, WILDCARD_TYPES, type TypeUrl } from "./protos";
import type { XdsResource } from "./resource";
import type { Snapshot } from "./snapshot";

/** The `node` of a DiscoveryRequest (only what the cache looks at). */
export interface XdsNode {
  readonly id?: string;
  readonly cluster?: string;
}

/** What a stream waits for. */
export interface WatchRequest {
  readonly node: XdsNode;
  readonly typeUrl: TypeUrl;
  /** The version the client last accepted ("" at first). */
  readonly versionInfo: string;
  /** Resource names the client subscribes to; empty = all for LDS/CDS, none for RDS/EDS. */
  readonly resourceNames: readonly string[];
  /** A version the client NACKed on this stream: never sent again. */
  readonly rejectedVersion?: string;
  /** Answer even if the version is unchanged (the subscription changed). */
  readonly force?: boolean;
}

/** The answer to a watch. */
export interface WatchResponse {
  readonly typeUrl: TypeUrl;
  readonly version: string;
  readonly resources: readonly XdsResource[];
}

/** What an incremental (delta) stream waits for: resources whose version differs from `known`. */
export interface DeltaWatchRequest {
  readonly node: XdsNode;
  readonly typeUrl: TypeUrl;
  /** Subscribed to every resource of the type (Envoy's LDS/CDS default). */
  readonly wildcard: boolean;
  /** Explicitly subscribed names. */
  readonly subscribed: ReadonlySet<string>;
  /** Resource name → version (content hash) the client holds. */
  readonly known: ReadonlyMap<string, string>;
}

/** The answer to a delta watch: only what changed, and what is gone. */
export interface DeltaWatchResponse {
  readonly typeUrl: TypeUrl;
  readonly systemVersion: string;
  readonly resources: readonly XdsResource[];
  readonly removed: readonly string[];
}

/** What the server sees of a cache (the conformance boundary). */
export interface ConfigWatcher {
  /** Answer now or when a matching snapshot arrives; returns a function that cancels the watch. */
  createWatch(request: WatchRequest, respond: (response: WatchResponse) => void): () => void;
  /** Incremental: answer when a resource the client subscribes to changed or disappeared. */
  createDeltaWatch(
    request: DeltaWatchRequest,
    respond: (response: DeltaWatchResponse) => void,
  ): () => void;
}

/** Options of {@link SnapshotCache}. */
export interface SnapshotCacheOptions {
  /** Which snapshot a node gets; default its `id` (go-control-plane's `IDHash`). */
  nodeKey?: (node: XdsNode) => string;
}

interface Watch {
  readonly request: WatchRequest;
  readonly respond: (response: WatchResponse) => void;
}
interface DeltaWatch {
  readonly request: DeltaWatchRequest;
  readonly respond: (response: DeltaWatchResponse) => void;
}

/** Snapshots per node key, and the watches waiting on them. */
export class SnapshotCache implements ConfigWatcher {
  readonly #nodeKey: (node: XdsNode) => string;
  readonly #snapshots = new Map<string, Snapshot>();
  readonly #watches = new Map<string, Set<Watch>>();
  readonly #deltaWatches = new Map<string, Set<DeltaWatch>>();

  constructor(options: SnapshotCacheOptions = {}) {
    this.#nodeKey = options.nodeKey ?? ((node) => node.id ?? "");
  }

  /** The key a node's snapshot is stored under. */
  nodeKey(node: XdsNode): string {
    return this.#nodeKey(node);
  }

  /** Install a snapshot for a node key and answer every open watch it satisfies (CDS/EDS first). */
  setSnapshot(key: string, snapshot: Snapshot): void {
    this.#snapshots.set(key, snapshot);
    const order = (t: TypeUrl) => PUSH_ORDER.indexOf(t);
    const watches = this.#watches.get(key) ?? new Set<Watch>();
    const deltas = this.#deltaWatches.get(key) ?? new Set<DeltaWatch>();
    const ready: (() => void)[] = [];
    for (const watch of [...watches].sort(
      (a, b) => order(a.request.typeUrl) - order(b.request.typeUrl),
    )) {
      if (!shouldRespond(snapshot, watch.request)) continue;
      watches.delete(watch);
      ready.push(() => watch.respond(respondWith(snapshot, watch.request)));
    }
    for (const watch of [...deltas].sort(
      (a, b) => order(a.request.typeUrl) - order(b.request.typeUrl),
    )) {
      const response = deltaOf(snapshot, watch.request);
      if (!response) continue;
      deltas.delete(watch);
      ready.push(() => watch.respond(response));
    }
    for (const answer of ready) answer();
  }

  /** The snapshot of a node key, if any. */
  getSnapshot(key: string): Snapshot | undefined {
    return this.#snapshots.get(key);
  }

  /** Drop a node key's snapshot (its watches stay open until a new one arrives). */
  clearSnapshot(key: string): void {
    this.#snapshots.delete(key);
  }

  createWatch(request: WatchRequest, respond: (response: WatchResponse) => void): () => void {
    const key = this.#nodeKey(request.node);
    const snapshot = this.#snapshots.get(key);
    if (snapshot && shouldRespond(snapshot, request)) {
      respond(respondWith(snapshot, request));
      return () => undefined;
    }
    const watch: Watch = { request, respond };
    let set = this.#watches.get(key);
    if (!set) this.#watches.set(key, (set = new Set()));
    set.add(watch);
    return () => {
      set.delete(watch);
    };
  }

  createDeltaWatch(
    request: DeltaWatchRequest,
    respond: (response: DeltaWatchResponse) => void,
  ): () => void {
    const key = this.#nodeKey(request.node);
    const snapshot = this.#snapshots.get(key);
    const response = snapshot && deltaOf(snapshot, request);
    if (response) {
      respond(response);
      return () => undefined;
    }
    const watch: DeltaWatch = { request, respond };
    let set = this.#deltaWatches.get(key);
    if (!set) this.#deltaWatches.set(key, (set = new Set()));
    set.add(watch);
    return () => {
      set.delete(watch);
    };
  }

  /** Number of open watches, state of the world and delta (for tests and metrics). */
  openWatchCount(): number {
    let n = 0;
    for (const set of this.#watches.values()) n += set.size;
    for (const set of this.#deltaWatches.values()) n += set.size;
    return n;
  }
}

function shouldRespond(snapshot: Snapshot, request: WatchRequest): boolean {
  // A changed subscription is answered even at a NACKed version: the client asks for other names.
  if (request.force === true) return true;
  const version = snapshot.version(request.typeUrl);
  if (version === request.rejectedVersion) return false;
  return version !== request.versionInfo;
}

/**
 * Whether a SotW request subscribes to every resource of its type: an empty name list means so
 * only for LDS, CDS and SRDS (xDS' wildcard types); for RDS and EDS it subscribes to nothing.
 */
export function isWildcard(typeUrl: TypeUrl, names: readonly string[]): boolean {
  return names.includes("*") || (names.length === 0 && WILDCARD_TYPES.includes(typeUrl));
}

function respondWith(snapshot: Snapshot, request: WatchRequest): WatchResponse {
  const all = snapshot.resources(request.typeUrl);
  const resources = isWildcard(request.typeUrl, request.resourceNames)
    ? [...all.values()]
    : request.resourceNames.flatMap((n) => {
        const r = all.get(n);
        return r ? [r] : [];
      });
  return { typeUrl: request.typeUrl, version: snapshot.version(request.typeUrl), resources };
}

/** What a delta client lacks: changed or new resources it subscribes to, and the ones now gone. */
function deltaOf(snapshot: Snapshot, request: DeltaWatchRequest): DeltaWatchResponse | undefined {
  const all = snapshot.resources(request.typeUrl);
  const resources: XdsResource[] = [];
  const consider = (resource: XdsResource | undefined): void => {
    if (resource && request.known.get(resource.name) !== resource.hash) resources.push(resource);
  };
  if (request.wildcard) for (const r of all.values()) consider(r);
  for (const name of request.subscribed) if (!request.wildcard) consider(all.get(name));
  const removed = [...request.known.keys()].filter((name) => !all.has(name));
  if (resources.length === 0 && removed.length === 0) return undefined;
  return {
    typeUrl: request.typeUrl,
    systemVersion: snapshot.version(request.typeUrl),
    resources,
    removed,
  };
}
