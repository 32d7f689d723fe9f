/**
 * The etcd key layout of the runtime (ARCHITECTURE.md, "The runtime"). Every process reads and
 * writes state only through these functions, so the layout lives in one place.
 */
export const KEY_PREFIX = "/shardworks/";

/** Key builders and prefixes for every record kind the runtime stores in etcd. */
export const keys = {
  /** `nodes/<node>`: a NodeRecord, bound to the node's lease. */
  node: (node: string): string => `${KEY_PREFIX}nodes/${node}`,
  nodesPrefix: `${KEY_PREFIX}nodes/`,
  /** `sandboxes/<id>`: a SandboxRecord, updated by compare-and-swap on its mod revision. */
  sandbox: (id: string): string => `${KEY_PREFIX}sandboxes/${id}`,
  sandboxesPrefix: `${KEY_PREFIX}sandboxes/`,
  /** `assignments/<node>/<id>`: written in the transaction that marks a sandbox scheduled. */
  assignment: (node: string, id: string): string => `${KEY_PREFIX}assignments/${node}/${id}`,
  assignmentsPrefix: (node: string): string => `${KEY_PREFIX}assignments/${node}/`,
  allAssignmentsPrefix: `${KEY_PREFIX}assignments/`,
  /** `shards/<name>`: a ShardRecord (routing key, owner, forks, TTL, token hash). */
  shard: (name: string): string => `${KEY_PREFIX}shards/${name}`,
  shardsPrefix: `${KEY_PREFIX}shards/`,
  /** `routing-keys/<key>`: the name of the shard that owns a routing key (keeps keys unique). */
  routingKey: (key: string): string => `${KEY_PREFIX}routing-keys/${key}`,
  /** `routers/<name>`: a RouterRecord (a routing controller replica), bound to its lease. */
  router: (name: string): string => `${KEY_PREFIX}routers/${name}`,
  routersPrefix: `${KEY_PREFIX}routers/`,
  /** Election key of the single placer among scheduler replicas. */
  placerElection: `${KEY_PREFIX}elections/placer`,
} as const;

/** The last path segment of a key, e.g. the shard name of `/shardworks/shards/<name>`. */
export function keyName(key: string): string {
  return key.slice(key.lastIndexOf("/") + 1);
}
