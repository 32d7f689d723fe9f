/**
 * An immutable, versioned set of xDS resources (go-control-plane `pkg/cache/v3/snapshot.go`). Each
 * resource type has its own version, derived from the content: the same resources always give the
 * same version, so two controllers that see the same state serve the same versions, and a change
 * that leaves clusters alone does not re-send clusters.
 */
import { createHash } from "node:crypto";
import { PUSH_ORDER, TypeUrl } from "./protos";
import {
  clusterReferences,
  edsServiceName,
  rdsNames,
  vhostClusters,
  virtualHosts,
} from "./references";
import type { SnapshotResources, XdsResource } from "./resource";
import { changedMiddle } from "../../lib/lists";

/** What changed in one type against the snapshot a successor was built from. */
interface TypeDiff {
  /** Resources added or whose content changed (the new ones). */
  readonly changed: readonly XdsResource[];
  /** The previous resources of names now gone or changed (what their old versions referenced). */
  readonly replaced: readonly XdsResource[];
  /** Names no longer present. */
  readonly removed: readonly string[];
}

/**
 * Adds to `delta` what changes from the cluster list `before` to `after`, counting only what lies
 * between their common start and common end.
 */
function countChange(
  delta: Map<string, number>,
  before: readonly string[],
  after: readonly string[],
): void {
  const { start, endBefore, endAfter } = changedMiddle(before, after);
  for (let i = start; i < endBefore; i++) delta.set(before[i]!, (delta.get(before[i]!) ?? 0) - 1);
  for (let i = start; i < endAfter; i++) delta.set(after[i]!, (delta.get(after[i]!) ?? 0) + 1);
}

/** How many references name each cluster (routes) and each load assignment (EDS clusters). */
interface ReferenceCounts {
  readonly clusters: Map<string, number>;
  readonly endpoints: Map<string, number>;
}

const FINGERPRINT_BYTES = 16;
/** sha256(name, hash) of a resource, memoized per (immutable) resource. */
const fingerprints = new WeakMap<XdsResource, Buffer>();
function fingerprint(resource: XdsResource): Buffer {
  let found = fingerprints.get(resource);
  if (!found) {
    found = createHash("sha256")
      .update(resource.name)
      .update("\0")
      .update(resource.hash)
      .digest()
      .subarray(0, FINGERPRINT_BYTES);
    fingerprints.set(resource, found);
  }
  return found;
}
/**
 * Whether a list holds the same resources as the one before it, in the same order: at once when it
 * is the same list (lists given to a snapshot are never changed afterwards), else by a walk.
 */
function sameResources(before: readonly XdsResource[], given: readonly XdsResource[]): boolean {
  if (before === given) return true;
  return (
    before.length === given.length &&
    before.every((r, i) => {
      const g = given[i]!;
      return r === g || (r.name === g.name && r.hash === g.hash);
    })
  );
}
function xorInto(acc: Buffer, resource: XdsResource): void {
  const f = fingerprint(resource);
  for (let i = 0; i < FINGERPRINT_BYTES; i++) acc[i]! ^= f[i]!;
}

/** Adds a given resource to its type's map, refusing another type and a second of one name. */
function addResource(map: Map<string, XdsResource>, typeUrl: TypeUrl, resource: XdsResource): void {
  if (resource.typeUrl !== typeUrl) {
    throw new Error(`resource ${resource.name} is a ${resource.typeUrl}, not a ${typeUrl}`);
  }
  if (map.has(resource.name)) throw new Error(`duplicate ${typeUrl} named ${resource.name}`);
  map.set(resource.name, resource);
}

/**
 * A type's map and diff for a successor given `given` where its predecessor was given `before`
 * (whose map is `old`), folding the changes into `acc`. Only what lies between the start and the
 * end both lists share is looked at: a new shard among 10,000 appends a cluster or two, and the
 * other 10,000 are copied with the map, not hashed, checked and inserted one by one. The rest of
 * `given` holds `before`'s resources, so its names are unique and of the type.
 */
function successorMap(
  typeUrl: TypeUrl,
  old: ReadonlyMap<string, XdsResource>,
  before: readonly XdsResource[],
  given: readonly XdsResource[],
  acc: Buffer,
): { map: Map<string, XdsResource>; diff: TypeDiff } {
  const { start, endBefore, endAfter: endGiven } = changedMiddle(before, given);
  const map = new Map(old);
  const gone = new Map<string, XdsResource>();
  for (let i = start; i < endBefore; i++) {
    const was = before[i]!;
    map.delete(was.name);
    gone.set(was.name, was);
  }
  const changed: XdsResource[] = [];
  const replaced: XdsResource[] = [];
  for (let i = start; i < endGiven; i++) {
    const resource = given[i]!;
    addResource(map, typeUrl, resource);
    const was = gone.get(resource.name);
    gone.delete(resource.name);
    if (was === resource || was?.hash === resource.hash) continue;
    if (was) {
      xorInto(acc, was);
      replaced.push(was);
    }
    xorInto(acc, resource);
    changed.push(resource);
  }
  for (const was of gone.values()) {
    xorInto(acc, was);
    replaced.push(was);
  }
  return { map, diff: { changed, replaced, removed: [...gone.keys()] } };
}

/**
 * An immutable, versioned set of resources for one node (or group of nodes).
 *
 * A type's version is the XOR of sha256(name, content hash) over its resources: content-derived
 * and independent of order (ADR 0005), and updatable per changed resource, so a successor built
 * from the snapshot it replaces costs one map lookup per resource plus a hash per changed one,
 * not a sort and a hash of everything. The consistency check is incremental the same way.
 */
export class Snapshot {
  readonly #byType: ReadonlyMap<TypeUrl, ReadonlyMap<string, XdsResource>>;
  readonly #versions: ReadonlyMap<TypeUrl, string>;
  readonly #accumulators = new Map<TypeUrl, Buffer>();
  /** The lists given, per type (so a successor given the same list reuses this type's work). */
  readonly #inputs = new Map<TypeUrl, readonly XdsResource[]>();
  /** Per type, what changed against `previous` (absent: built from scratch). */
  readonly #diffs = new Map<TypeUrl, TypeDiff>();
  /** A checked, consistent predecessor, until this snapshot is checked (then dropped). */
  #base: Snapshot | undefined;
  #problems: string[] | undefined;
  #references: ReferenceCounts | undefined;

  /**
   * `previous` (optional) is the snapshot this one replaces: a type whose resource list holds the
   * same resources in the same order reuses its map and version; otherwise only the resources
   * whose name or content hash differ are hashed into the version.
   */
  constructor(resources: Partial<SnapshotResources>, previous?: Snapshot) {
    const byType = new Map<TypeUrl, ReadonlyMap<string, XdsResource>>();
    const versions = new Map<TypeUrl, string>();
    for (const typeUrl of PUSH_ORDER) {
      const given = resources[typeUrl] ?? [];
      this.#inputs.set(typeUrl, given);
      const before = previous === undefined ? undefined : previous.#inputs.get(typeUrl);
      if (previous && before && sameResources(before, given)) {
        byType.set(typeUrl, previous.resources(typeUrl));
        versions.set(typeUrl, previous.version(typeUrl));
        this.#accumulators.set(typeUrl, previous.#accumulators.get(typeUrl)!);
        this.#diffs.set(typeUrl, { changed: [], replaced: [], removed: [] });
        continue;
      }
      const acc = Buffer.alloc(FINGERPRINT_BYTES);
      let map: Map<string, XdsResource>;
      if (previous && before) {
        previous.#accumulators.get(typeUrl)!.copy(acc);
        const built = successorMap(typeUrl, previous.resources(typeUrl), before, given, acc);
        map = built.map;
        this.#diffs.set(typeUrl, built.diff);
      } else {
        map = new Map<string, XdsResource>();
        for (const resource of given) addResource(map, typeUrl, resource);
        for (const resource of map.values()) xorInto(acc, resource);
      }
      this.#accumulators.set(typeUrl, acc);
      byType.set(typeUrl, map);
      versions.set(typeUrl, acc.toString("hex"));
    }
    this.#byType = byType;
    this.#versions = versions;
    // Only what the check needs is kept of the predecessor, not the predecessor (no chain).
    this.#base = previous !== undefined && previous.#problems?.length === 0 ? previous : undefined;
  }

  /** The version of one resource type (content-derived). */
  version(typeUrl: TypeUrl): string {
    return this.#versions.get(typeUrl) ?? "";
  }

  /**
   * The resources of one type, by name. Iteration order is not the given list's: a successor keeps
   * its predecessor's order and appends what changed (xDS gives order no meaning; versions and
   * contents are the same as a fresh snapshot's).
   */
  resources(typeUrl: TypeUrl): ReadonlyMap<string, XdsResource> {
    return this.#byType.get(typeUrl) ?? new Map<string, XdsResource>();
  }

  /**
   * What makes this snapshot unsafe to serve: a route to a missing cluster, a listener naming a
   * missing route configuration, an EDS cluster without its load assignment. Empty = consistent.
   *
   * Built from a consistent, checked predecessor, only the changes are checked: each changed
   * route's and EDS cluster's references, and, through reference counts carried from snapshot to
   * snapshot, whether anything still names a removed cluster or load assignment. A problem found
   * that way (or no checked predecessor) runs the full walk, which words the messages.
   */
  inconsistencies(): string[] {
    if (this.#problems) return [...this.#problems];
    const base = this.#base;
    this.#base = undefined;
    const incremental =
      base !== undefined && base.#references !== undefined && this.#incrementalCheck(base);
    this.#problems = incremental ? [] : this.#fullCheck();
    // The diffs hold the predecessor's replaced resources; only the check needed them.
    this.#diffs.clear();
    return [...this.#problems];
  }

  /** Checks the diffs against `base`'s counts (moved here); false when a change may be a problem. */
  #incrementalCheck(base: Snapshot): boolean {
    // The counts move from the predecessor to this snapshot (copying them would cost as much as
    // the full walk); every change is journaled and undone if the check fails, so the
    // predecessor keeps them and a retry from it stays incremental.
    const counts = base.#references!;
    const journal: [Map<string, number>, string, number][] = [];
    const bump = (map: Map<string, number>, name: string, by: number): void => {
      journal.push([map, name, by]);
      map.set(name, (map.get(name) ?? 0) + by);
    };
    if (this.#applyDiffs(counts, bump)) {
      base.#references = undefined;
      this.#references = counts;
      return true;
    }
    for (const [map, name, by] of journal.reverse()) map.set(name, (map.get(name) ?? 0) - by);
    return false;
  }

  #applyDiffs(
    counts: ReferenceCounts,
    bump: (map: Map<string, number>, name: string, by: number) => void,
  ): boolean {
    const clusters = this.resources(TypeUrl.Cluster);
    const endpoints = this.resources(TypeUrl.Endpoint);
    const routeDiff = this.#diffs.get(TypeUrl.Route);
    const clusterDiff = this.#diffs.get(TypeUrl.Cluster);
    const endpointDiff = this.#diffs.get(TypeUrl.Endpoint);
    if (!routeDiff || !clusterDiff || !endpointDiff) return false;
    // How many more (or fewer) references each cluster has: a changed RouteConfiguration is
    // compared with its last version virtual host by virtual host (by name), and only the part of
    // a changed virtual host's cluster list between what both versions start and end with is
    // counted. Translation reuses unchanged virtual hosts and rebuilds a changed one from the
    // same routes but one, so a new routing key among 10,000 counts nothing.
    const delta = new Map<string, number>();
    const oldRoutes = new Map(routeDiff.replaced.map((r) => [r.name, r]));
    for (const route of routeDiff.changed) {
      const old = virtualHosts(oldRoutes.get(route.name));
      const before = new Map(old.map((v) => [v.name, v]));
      const after = virtualHosts(route);
      if (before.size !== old.length || new Set(after.map((v) => v.name)).size !== after.length) {
        return false; // duplicate virtual host names: the full walk words it
      }
      for (const vhost of after) {
        const was = before.get(vhost.name);
        before.delete(vhost.name);
        if (was !== vhost) countChange(delta, was ? vhostClusters(was) : [], vhostClusters(vhost));
      }
      for (const was of before.values()) countChange(delta, vhostClusters(was), []);
    }
    for (const name of routeDiff.removed) {
      for (const was of virtualHosts(oldRoutes.get(name))) {
        countChange(delta, vhostClusters(was), []);
      }
    }
    for (const [cluster, by] of delta) {
      if (by === 0) continue;
      if (by > 0 && !clusters.has(cluster)) return false;
      bump(counts.clusters, cluster, by);
    }
    for (const cluster of clusterDiff.replaced) {
      const needs = edsServiceName(cluster);
      if (needs !== undefined) bump(counts.endpoints, needs, -1);
    }
    for (const cluster of clusterDiff.changed) {
      const needs = edsServiceName(cluster);
      if (needs === undefined) continue;
      if (!endpoints.has(needs)) return false;
      bump(counts.endpoints, needs, 1);
    }
    for (const name of clusterDiff.removed) if ((counts.clusters.get(name) ?? 0) > 0) return false;
    for (const name of endpointDiff.removed) {
      if ((counts.endpoints.get(name) ?? 0) > 0) return false;
    }
    return this.#listenerProblems().length === 0;
  }

  #fullCheck(): string[] {
    const problems: string[] = [];
    const clusters = this.resources(TypeUrl.Cluster);
    const endpoints = this.resources(TypeUrl.Endpoint);
    const routes = this.resources(TypeUrl.Route);
    const counts: ReferenceCounts = { clusters: new Map(), endpoints: new Map() };
    for (const cluster of clusters.values()) {
      const serviceName = edsServiceName(cluster);
      if (serviceName === undefined) continue;
      counts.endpoints.set(serviceName, (counts.endpoints.get(serviceName) ?? 0) + 1);
      if (!endpoints.has(serviceName)) {
        problems.push(`EDS cluster ${cluster.name} has no ClusterLoadAssignment "${serviceName}"`);
      }
    }
    for (const route of routes.values()) {
      for (const { vhost, cluster } of clusterReferences(route)) {
        counts.clusters.set(cluster, (counts.clusters.get(cluster) ?? 0) + 1);
        if (!clusters.has(cluster)) {
          problems.push(
            `route configuration ${route.name}, virtual host ${vhost}: cluster ${cluster} does not exist`,
          );
        }
      }
    }
    problems.push(...this.#listenerProblems());
    this.#references = counts;
    return problems;
  }

  #listenerProblems(): string[] {
    const routes = this.resources(TypeUrl.Route);
    const problems: string[] = [];
    const loaders = [
      ...this.resources(TypeUrl.Listener).values(),
      ...this.resources(TypeUrl.ScopedRoute).values(),
    ];
    for (const loader of loaders) {
      const kind = loader.typeUrl === TypeUrl.Listener ? "listener" : "route scope";
      for (const name of rdsNames(loader)) {
        if (!routes.has(name)) {
          problems.push(`${kind} ${loader.name}: route configuration ${name} does not exist`);
        }
      }
    }
    return problems;
  }

  /** True when {@link inconsistencies} is empty. */
  consistent(): boolean {
    return this.inconsistencies().length === 0;
  }
}
