/** The memoizing {@link Translator} (and {@link translate}, translation from scratch). */
import { Ports } from "../../../contract/names";
import type { ShardRecord } from "../../../contract/model";
import { PUSH_ORDER } from "../xds/protos";
import type { SnapshotResources, XdsResource } from "../xds/resource";
import { sharedForkCluster } from "./envoy-resources";
import { Ingress } from "./ingress";
import {
  DEFAULT_ROUTE_BUCKETS,
  MAX_ROUTE_BUCKETS,
  RESERVED_SERVICE_NAMES,
  routeBucket,
  upstreamHttp,
} from "./names";
import { emptyLists, perNode, splitOf, type Lists, type Split } from "./per-node";
import { sandboxPart, type SandboxPart } from "./sandbox-part";
import { servicePart, type ServicePart } from "./service-part";
import { shardPart, sortedIndex, type ShardPart } from "./shard-part";
import { expiry, type RoutingState } from "./state";

/** Options of translation. */
export interface TranslateOptions {
  /** Sandbox hosts are `<id>.sandbox.<domain>`; default `shardworks.local`. */
  domain?: string;
  /** Port of Envoy's ingress listener; default 8080 (the EnvoyGateway default). */
  ingressPort?: number;
  /** Address Envoy's ingress listener binds; default `0.0.0.0` (every interface of the pod). */
  ingressHost?: string;
  /**
   * Buckets routing keys hash into, each one route configuration of the gateway (ADR 0016); a
   * shard change rebuilds one. Default 64, at most 1024.
   */
  routeBuckets?: number;
}

/** Translate from scratch (the reference the memoizing {@link Translator} must agree with). */
export function translate(state: RoutingState, options: TranslateOptions = {}): SnapshotResources {
  return new Translator(options).translate(state);
}

/** Incremental translation: same output as {@link translate}, reusing unchanged parts. */
export class Translator {
  readonly #domain: string;
  readonly #buckets: number;
  #shards = new Map<string, ShardPart>();
  /** The records of the last call, to find what changed by identity. */
  #lastShards: readonly ShardRecord[] | undefined;
  /** No shard of the last call expires before this (ms): until then none needs filtering. */
  #expiryFloor = -Infinity;
  /** The `now` of the last call (ms), absent when it had none. */
  #lastNow: number | undefined;
  /** Service → the parts of the shards forking it, sorted by shard name. */
  readonly #forksByService = new Map<string, ShardPart[]>();
  #services = new Map<string, ServicePart>();
  #sandboxes = new Map<string, SandboxPart>();
  readonly #ingress: Ingress;
  /** Each fork's bucket, computed once per shard part. */
  readonly #bucketOf = new WeakMap<ShardPart, number>();
  readonly #sharedClusters: XdsResource[];

  constructor(options: TranslateOptions = {}) {
    this.#domain = options.domain ?? "shardworks.local";
    const buckets = options.routeBuckets ?? DEFAULT_ROUTE_BUCKETS;
    if (!Number.isInteger(buckets) || buckets < 1 || buckets > MAX_ROUTE_BUCKETS) {
      throw new Error(
        `routeBuckets must be an integer from 1 to ${MAX_ROUTE_BUCKETS}, got ${String(buckets)}`,
      );
    }
    this.#buckets = buckets;
    this.#ingress = new Ingress({
      host: options.ingressHost ?? "0.0.0.0",
      port: options.ingressPort ?? Ports.gatewayListener,
      buckets,
      domain: this.#domain,
    });
    this.#sharedClusters = (["http1", "http2"] as const).map(sharedForkCluster);
  }

  /** The bucket of a fork's routing key (memoized per shard part). */
  readonly #bucket = (part: ShardPart): number => {
    let bucket = this.#bucketOf.get(part);
    if (bucket === undefined) {
      bucket = routeBucket(part.record.routingKey, this.#buckets);
      this.#bucketOf.set(part, bucket);
    }
    return bucket;
  };

  /**
   * Resources for a state. Records are compared by identity: pass the same object for a shard or
   * sandbox that did not change (the controller does), and its resources are reused.
   */
  translate(state: RoutingState): SnapshotResources {
    for (const b of state.baseline) {
      if (RESERVED_SERVICE_NAMES.includes(b.name)) {
        throw new Error(`baseline service name "${b.name}" is reserved; rename the service`);
      }
    }
    const now = state.now?.getTime();
    const changed = this.#changedRecords(state.shards, now);
    if (changed) this.#applyChanges(changed);
    else this.#fullScan(state.shards, now);
    // A copy: a caller that changes its array in place and passes it again is still seen.
    this.#lastShards = [...state.shards];
    this.#lastNow = now;
    const forksByService = this.#forksByService;

    const services = new Map<string, ServicePart>();
    for (const baseline of [...state.baseline].sort(byName)) {
      const forks = forksByService.get(baseline.name) ?? NO_FORKS;
      const previous = this.#services.get(baseline.name);
      const sameBaseline =
        previous !== undefined &&
        previous.baseline.destination === baseline.destination &&
        sameHosts(previous.baseline.hosts, baseline.hosts) &&
        upstreamHttp(previous.baseline.protocol) === upstreamHttp(baseline.protocol);
      services.set(
        baseline.name,
        sameBaseline && previous.shardParts === forks
          ? previous
          : servicePart(
              baseline,
              forks,
              this.#domain,
              this.#bucket,
              sameBaseline ? previous : undefined,
            ),
      );
    }
    this.#services = services;

    const sandboxes = new Map<string, SandboxPart>();
    for (const record of [...state.sandboxes].sort((a, b) => compare(a.id, b.id))) {
      if (record.status.phase !== "running" || Object.keys(record.status.endpoints).length === 0) {
        continue;
      }
      const previous = this.#sandboxes.get(record.id);
      sandboxes.set(
        record.id,
        previous?.record === record ? previous : sandboxPart(record, this.#domain),
      );
    }
    this.#sandboxes = sandboxes;

    const ingress = this.#ingress.resources([...services.values()], [...sandboxes.values()]);

    // Each kind's lists are filled beside the whole (what forNode would filter, in the same
    // order), so the controller does not filter 20,000 resources by name on every change. Each
    // part's split is computed once (a change re-splits only the parts it rebuilt), and the lists
    // are concatenated from the parts' (a copy of references, not a push per resource).
    // A fork of a service that is not (or no longer) in the baseline routes nowhere: not sent
    // (only baseline services have a part). Fork clusters `shard/…` are the gRPC clients'.
    // A service's fork resources are split apart from its own: a change to one fork of a service
    // keeps the others' list (servicePart reuses it), so their split is not redone.
    const splits: Split[] = [
      splitOf(this.#sharedClusters, () => this.#sharedClusters),
      ...[...services.values()].flatMap((part) => [
        splitOf(part.resources, () => part.resources),
        splitOf(part.forkResources, () => part.forkResources),
        splitOf(part, () => [part.route]),
      ]),
      ...[...sandboxes.values()].map((part) => splitOf(part, () => part.resources)),
      splitOf(ingress, () => ingress),
    ];
    const out = this.#joined(splits, "all");
    const gateway = this.#joined(splits, "gateway");
    const grpc = this.#joined(splits, "grpc");
    perNode.set(out, { gateway, grpc });
    return out;
  }

  /** Per kind and type, the pieces of the last joined list and the list. */
  readonly #lastJoined = new Map<string, { pieces: XdsResource[][]; list: XdsResource[] }>();

  /**
   * The parts' lists of one kind, joined per type. A type whose pieces are the same lists as last
   * time gets the same list back, so a snapshot built from the last one sees it unchanged at once
   * (a shard change at 10,000 shards leaves every type but routes alone).
   */
  #joined(splits: readonly Split[], key: keyof Split): Lists {
    const lists = emptyLists();
    for (const typeUrl of PUSH_ORDER) {
      // Empty lists are left out: a rebuilt part has new ones of the types it holds none of.
      const pieces = splits.map((x) => x[key][typeUrl]).filter((piece) => piece.length > 0);
      const memo = `${key} ${typeUrl}`;
      const last = this.#lastJoined.get(memo);
      if (
        last !== undefined &&
        last.pieces.length === pieces.length &&
        last.pieces.every((piece, i) => piece === pieces[i])
      ) {
        lists[typeUrl] = last.list;
        continue;
      }
      const list = ([] as XdsResource[]).concat(...pieces);
      this.#lastJoined.set(memo, { pieces, list });
      lists[typeUrl] = list;
    }
    return lists;
  }

  /**
   * The records that changed since the last call, when the list is the last one but for records
   * replaced in place (same name, same position) or appended: the controller passes its records in
   * a stable order (a Map's values), so one change among 10,000 shards is found by identity
   * comparisons, without a map lookup per shard. Undefined when the full scan is needed: a record
   * removed or moved, too many changes, or a shard that may have expired since (`now` at or past
   * the earliest expiry seen).
   */
  #changedRecords(
    records: readonly ShardRecord[],
    now: number | undefined,
  ): ShardRecord[] | undefined {
    const last = this.#lastShards;
    if (last === undefined || records.length < last.length) return undefined;
    // Expiry was judged at the last call's `now`: without one, or with an earlier one (a clock
    // stepped back), shards left out then may be live now.
    const lastNow = this.#lastNow;
    if (lastNow !== undefined && (now === undefined || now < lastNow)) return undefined;
    if (now !== undefined && now >= this.#expiryFloor) return undefined;
    const changed: ShardRecord[] = [];
    for (let i = 0; i < records.length; i++) {
      const record = records[i]!;
      const before = last[i];
      if (record === before) continue;
      if (before === undefined ? this.#shards.has(record.name) : record.name !== before.name) {
        return undefined;
      }
      if (now !== undefined && expiry(record) <= now) return undefined;
      changed.push(record);
      if (changed.length > FAST_PATH_CHANGES) return undefined;
    }
    return changed;
  }

  /**
   * The few records that changed, in place or appended: the map is updated, not rebuilt, and each
   * service's sorted fork list is copied once and changed where the records' parts sort (a binary
   * search each), not filtered and sorted again.
   */
  #applyChanges(changed: readonly ShardRecord[]): void {
    const shards = this.#shards;
    const lists = new Map<string, ShardPart[]>();
    const listOf = (service: string): ShardPart[] => {
      let list = lists.get(service);
      if (!list) lists.set(service, (list = [...(this.#forksByService.get(service) ?? [])]));
      return list;
    };
    for (const record of changed) {
      const previous = shards.get(record.name);
      const part = shardPart(record, previous);
      for (const service of previous?.forks.keys() ?? []) {
        const list = listOf(service);
        const at = sortedIndex(list, previous!.record.name);
        if (list[at] === previous) list.splice(at, 1);
      }
      for (const service of part.forks.keys()) {
        const list = listOf(service);
        list.splice(sortedIndex(list, record.name), 0, part);
      }
      shards.set(record.name, part);
      this.#expiryFloor = Math.min(this.#expiryFloor, expiry(record));
    }
    this.#setForkLists(lists);
  }

  /**
   * Every live record against the last parts: reused where the record is the same object, new
   * parts for the rest, and the shards gone (removed, or expired at `now`) dropped; the fork lists
   * of the services whose forks changed are rebuilt.
   */
  #fullScan(records: readonly ShardRecord[], now: number | undefined): void {
    const dirty = new Set<string>();
    const added: ShardPart[] = [];
    const live = now === undefined ? records : records.filter((s) => expiry(s) > now);
    const shards = new Map<string, ShardPart>();
    let kept = 0;
    let floor = Infinity;
    for (const record of live) {
      floor = Math.min(floor, expiry(record));
      const previous = this.#shards.get(record.name);
      if (previous?.record === record && !shards.has(record.name)) {
        shards.set(record.name, previous);
        kept++;
        continue;
      }
      const part = previous?.record === record ? previous : shardPart(record, previous);
      const replaced = shards.get(record.name) ?? previous;
      for (const service of replaced?.forks.keys() ?? []) dirty.add(service);
      for (const service of part.forks.keys()) dirty.add(service);
      shards.set(record.name, part);
      added.push(part);
    }
    if (kept < this.#shards.size) {
      for (const [name, part] of this.#shards) {
        if (shards.get(name) === part) continue;
        for (const service of part.forks.keys()) dirty.add(service);
      }
    }
    this.#shards = shards;
    this.#expiryFloor = floor;
    const lists = new Map<string, ShardPart[]>();
    for (const service of dirty) {
      const list = (this.#forksByService.get(service) ?? []).filter(
        (p) => shards.get(p.record.name) === p,
      );
      for (const part of added) {
        if (part.forks.has(service) && shards.get(part.record.name) === part) list.push(part);
      }
      lists.set(
        service,
        list.sort((a, b) => compare(a.record.name, b.record.name)),
      );
    }
    this.#setForkLists(lists);
  }

  #setForkLists(lists: ReadonlyMap<string, ShardPart[]>): void {
    for (const [service, list] of lists) {
      if (list.length === 0) this.#forksByService.delete(service);
      else this.#forksByService.set(service, list);
    }
  }
}

/** More changed records than this in one call take the full scan (it is as fast then). */
const FAST_PATH_CHANGES = 256;

const NO_FORKS: readonly ShardPart[] = [];

/** Whether two baselines' extra host lists are equal (absent = empty). */
function sameHosts(a: readonly string[] | undefined, b: readonly string[] | undefined): boolean {
  const x = a ?? [];
  const y = b ?? [];
  return x.length === y.length && x.every((h, i) => h === y[i]);
}

function byName(a: { name: string }, b: { name: string }): number {
  return compare(a.name, b.name);
}
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
