/**
 * The records the runtime keeps in etcd, as zod schemas. They are the contract between the
 * scheduler, the node agents and the routing controller: each process parses what it reads with
 * these schemas, so a record written by one is understood by all.
 */
import { createHash } from "node:crypto";
import { isIPv4 } from "node:net";
import { z } from "zod";

/** DNS-1123 label: what a Kubernetes namespace suffix, a node name or a sandbox id may look like. */
export const dnsLabel = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, {
    message:
      "must be lowercase letters, digits and '-', starting and ending with a letter or digit",
  });

/**
 * Whether `value` holds a C0 control character or DEL (NUL, CR, LF, TAB, ESC, …): never part of a
 * name, a reference or an owner, and the stuff of header and log injection.
 */
export function hasControlCharacter(value: string): boolean {
  for (let i = 0; i < value.length; i += 1) {
    const code = value.charCodeAt(i);
    if (code < 0x20 || code === 0x7f) return true;
  }
  return false;
}

/** The VM/sandbox drivers a node agent can run. */
export const Driver = { Firecracker: "firecracker", Qemu: "qemu", Process: "process" } as const;
/** One of the driver names in {@link Driver}. */
export type Driver = (typeof Driver)[keyof typeof Driver];
export const driverSchema = z.enum([Driver.Firecracker, Driver.Qemu, Driver.Process]);

/** CPU in millicores and memory in MiB: what a sandbox asks for and what a node offers. */
export const resourcesSchema = z.strictObject({
  cpuMillis: z.number().int().positive().max(256_000),
  memoryMiB: z.number().int().positive().max(1_048_576),
});
export type Resources = z.infer<typeof resourcesSchema>;

/** Most entries of a sandbox's `nodeSelector` and of its `tolerations`. */
export const MAX_SELECTOR_ENTRIES = 32;

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** A label key's name part and a non-empty label value, as Kubernetes has them. */
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

/**
 * Why `key` is not a Kubernetes label key (`[prefix/]name`, as node labels, node selectors and
 * taint keys are), or undefined: the name 1-63 of `[A-Za-z0-9-_.]` starting and ending
 * alphanumeric, the optional prefix a DNS subdomain of at most 253 characters.
 */
export function labelKeyProblem(key: string): string | undefined {
  const example = 'e.g. "shardworks.dev/microvm" or "zone"';
  const parts = key.split("/");
  if (parts.length > 2) {
    return `a label key is [prefix/]name with at most one '/'; ${example}`;
  }
  const [prefix, name] = parts.length === 2 ? parts : [undefined, parts[0]];
  if (
    prefix !== undefined &&
    (prefix.length > 253 ||
      !DNS_SUBDOMAIN.test(prefix) ||
      prefix.split(".").some((label) => label.length > 63))
  ) {
    return `a label key's prefix (before '/') must be a DNS subdomain: lowercase letters, digits, '-' and '.', at most 253 characters; ${example}`;
  }
  if (name === undefined || name.length < 1 || name.length > 63 || !LABEL_NAME.test(name)) {
    return `a label key's name (after any prefix/) must be 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit; ${example}`;
  }
  return undefined;
}

/** Why `value` is not a Kubernetes label value (≤ 63 of `[A-Za-z0-9-_.]`, or empty), or undefined. */
export function labelValueProblem(value: string): string | undefined {
  if (value === "" || (value.length <= 63 && LABEL_NAME.test(value))) return undefined;
  return "a label value must be empty or at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit";
}

/** A Kubernetes label key (`[prefix/]name`). */
export const labelKeySchema = z.string().superRefine((key, ctx) => {
  const problem = labelKeyProblem(key);
  if (problem !== undefined) ctx.addIssue({ code: "custom", message: problem });
});

/** A Kubernetes label value (may be empty). */
export const labelValueSchema = z.string().superRefine((value, ctx) => {
  const problem = labelValueProblem(value);
  if (problem !== undefined) ctx.addIssue({ code: "custom", message: problem });
});

/**
 * Labels (node labels, a sandbox's node selector) as Kubernetes has them: every problem is
 * reported at `<field>.<key>`, so a key and its value are named in one place.
 */
function labelsSchema(maxEntries?: number) {
  return z.record(z.string(), z.string()).superRefine((labels, ctx) => {
    const entries = Object.entries(labels);
    if (maxEntries !== undefined && entries.length > maxEntries) {
      ctx.addIssue({
        code: "custom",
        message: `at most ${maxEntries} entries (there are ${entries.length})`,
      });
      return;
    }
    for (const [key, value] of entries) {
      const problem = labelKeyProblem(key) ?? labelValueProblem(value);
      if (problem !== undefined) ctx.addIssue({ code: "custom", path: [key], message: problem });
    }
  });
}

/** A Kubernetes-style taint on a node; a sandbox must tolerate it to be placed there. */
export const taintSchema = z.strictObject({
  key: labelKeySchema,
  value: labelValueSchema.default(""),
  effect: z.enum(["NoSchedule", "PreferNoSchedule"]).default("NoSchedule"),
});

/** What a sandbox tolerates: a taint's key, and its value unless any value will do. */
export const tolerationSchema = z.strictObject({
  key: labelKeySchema,
  value: labelValueSchema.optional(),
});

/**
 * A node's name: a DNS subdomain (RFC 1123), as Kubernetes names nodes, e.g.
 * `ip-10-0-1-23.ec2.internal` on EKS: dot-separated DNS labels, at most 253 characters.
 */
export const nodeName = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/, {
    message:
      "must be lowercase letters, digits, '-' and '.', each dot-separated part starting and ending with a letter or digit (e.g. ip-10-0-1-23.ec2.internal)",
  })
  .refine((name) => name.split(".").every((label) => label.length <= 63), {
    message: "each dot-separated part must be at most 63 characters",
  });

/**
 * `routers/<name>`: written by a routing controller replica, bound to its lease, so the scheduler
 * can ask every replica which xDS clients hold which configuration (CSDS).
 */
// Not strict, unlike the other records: a newer controller may add a field, and an older
// scheduler must still count that replica rather than skip it (mixed versions during a rollout).
export const routerRecordSchema = z.object({
  /** The replica's name (its pod name in a cluster). */
  name: nodeName,
  /** host:port of its ADS/CSDS server, as the scheduler reaches it. */
  address: z.string().min(1),
  /** The runtime version it runs, when known (the image tag). */
  version: z.string().min(1).optional(),
  startedAt: z.iso.datetime(),
});
export type RouterRecord = z.infer<typeof routerRecordSchema>;

/** `nodes/<node>`: written by a node agent, bound to its lease (liveness). */
export const nodeRecordSchema = z.strictObject({
  name: nodeName,
  /** host:port of the node agent's HTTP API (logs, migration). */
  address: z.string().min(1),
  driver: driverSchema,
  /** True only for drivers that give hardware isolation (firecracker, qemu). */
  hardwareIsolated: z.boolean(),
  capacity: resourcesSchema,
  labels: labelsSchema().default({}),
  taints: z.array(taintSchema).default([]),
  registeredAt: z.iso.datetime(),
});
export type NodeRecord = z.infer<typeof nodeRecordSchema>;

/** Where a node may connect to fetch an image; see `SandboxSpec.registryAccess`. */
export const registryAccessSchema = z.enum(["any", "public"]);
export type RegistryAccess = z.infer<typeof registryAccessSchema>;

/** What a user submits: an OCI image plus a command. */
export const sandboxSpecSchema = z.strictObject({
  /** OCI image: a layout directory (`oci:/path[:tag]`) or a registry reference (`host/repo:tag` or `@sha256:…`). */
  image: z.string().min(1).max(512),
  command: z.array(z.string()).min(1).max(256),
  env: z.record(z.string(), z.string()).default({}),
  resources: resourcesSchema.default({ cpuMillis: 250, memoryMiB: 128 }),
  /** Ask for a driver; absent = any. */
  driver: driverSchema.optional(),
  /** Node labels the node must have (Kubernetes label keys and values, at most 32). */
  nodeSelector: labelsSchema(MAX_SELECTOR_ENTRIES).default({}),
  /** Taints the sandbox tolerates (at most 32). */
  tolerations: z
    .array(tolerationSchema)
    .max(MAX_SELECTOR_ENTRIES, { message: `at most ${MAX_SELECTOR_ENTRIES} entries` })
    .default([]),
  /** Guest ports to expose at `<sandbox-id>.sandbox.<domain>`. */
  ports: z.array(z.number().int().min(1).max(65535)).default([]),
  /** Network access from inside the sandbox (off by default). */
  network: z.boolean().default(false),
  /** The shard this sandbox belongs to, if any (per-shard tokens only reach their own). */
  shard: dnsLabel.optional(),
  /**
   * The uid of that shard when the sandbox was created (set by the API, never by the caller): a
   * later shard of the same name has another uid, so its token cannot reach this sandbox.
   */
  shardUid: z
    .string()
    .regex(/^[a-f0-9]{32}$/)
    .optional(),
  /**
   * Where the node may connect to fetch the image (set by the API, never by the caller):
   * `public` for a shard token's image from a registry outside `shardRegistries` — every
   * connection only to public addresses, checked on the resolved address — else `any`.
   */
  registryAccess: registryAccessSchema.optional(),
});
export type SandboxSpec = z.infer<typeof sandboxSpecSchema>;

/**
 * How the node may fetch a sandbox's image: as the API said, else (a record written before the
 * API said it) `public` for a shard's sandbox and `any` for the platform's.
 */
export function registryAccessOf(spec: SandboxSpec): RegistryAccess {
  return spec.registryAccess ?? (spec.shard !== undefined ? "public" : "any");
}

/** Lifecycle of a sandbox. */
export const SandboxPhase = {
  Pending: "pending",
  Scheduled: "scheduled",
  Starting: "starting",
  Running: "running",
  Exited: "exited",
  Failed: "failed",
  Migrating: "migrating",
} as const;
export type SandboxPhase = (typeof SandboxPhase)[keyof typeof SandboxPhase];
export const sandboxPhaseSchema = z.enum([
  SandboxPhase.Pending,
  SandboxPhase.Scheduled,
  SandboxPhase.Starting,
  SandboxPhase.Running,
  SandboxPhase.Exited,
  SandboxPhase.Failed,
  SandboxPhase.Migrating,
]);

/** Status, written by the scheduler (placement) and the node agent (everything after). */
export const sandboxStatusSchema = z.strictObject({
  phase: sandboxPhaseSchema,
  node: nodeName.optional(),
  exitCode: z.number().int().optional(),
  reason: z.string().optional(),
  /** Whether the start came from warm capacity (snapshot restore / pre-started sandbox). */
  start: z.enum(["warm", "cold"]).optional(),
  startMillis: z.number().nonnegative().optional(),
  /** host:port where each exposed guest port is reachable, keyed by guest port. */
  endpoints: z.record(z.string(), z.string()).default({}),
  updatedAt: z.iso.datetime(),
});
export type SandboxStatus = z.infer<typeof sandboxStatusSchema>;

/** `sandboxes/<id>`: spec + status, updated by compare-and-swap on the key's mod revision. */
export const sandboxRecordSchema = z.strictObject({
  id: dnsLabel,
  spec: sandboxSpecSchema,
  status: sandboxStatusSchema,
  createdAt: z.iso.datetime(),
});
export type SandboxRecord = z.infer<typeof sandboxRecordSchema>;

/** `assignments/<node>/<id>`: what a node agent must run. */
export const assignmentRecordSchema = z.strictObject({
  sandboxId: dnsLabel,
  node: nodeName,
  assignedAt: z.iso.datetime(),
});
export type AssignmentRecord = z.infer<typeof assignmentRecordSchema>;

/**
 * Longest routing key. Envoy refuses a regex whose RE2 program size exceeds
 * `re2.max_program_size.error_level` (default 100) and the baggage route's regex grows by one
 * instruction per key character (68 + length, see test/unit/routing/re2-program-size.test.ts): at
 * 32 characters it is exactly 100, so every key stays within Envoy's default.
 */
export const MAX_ROUTING_KEY_LENGTH = 32;

/**
 * A routing key: sent by clients in a header or a baggage member, so it is kept to characters that
 * are safe in both and cannot inject into a header or a regular expression.
 */
export const routingKeySchema = z
  .string()
  .min(4)
  .max(MAX_ROUTING_KEY_LENGTH, {
    message: `must be at most ${MAX_ROUTING_KEY_LENGTH} characters (the gateway's regex size limit)`,
  })
  .regex(/^[a-z0-9][a-z0-9-]*$/, {
    message: "must be lowercase letters, digits and '-' (it travels in headers and baggage)",
  });

/**
 * Why the host of a destination is not one a resolver or URL parser reads as written, or
 * undefined. A name whose last label is numeric is read as an IPv4 address (`a.1`, `999.1.1.1`,
 * `1.2.3.4.5` are no host at all), and `2852039166` or `0xa9.0xfe.0xa9.0xfe` are 169.254.169.254:
 * only a dotted-quad IPv4 or a DNS name is a destination.
 */
function destinationHostProblem(host: string): string | undefined {
  let hostname: string;
  try {
    hostname = new URL(`http://${host}`).hostname;
  } catch {
    return `"${host}" is neither a DNS name nor an IPv4 address a.b.c.d (each 0-255); e.g. api.shard-alice.svc or 10.0.0.7`;
  }
  if (isIPv4(hostname) && hostname !== host.toLowerCase()) {
    return `"${host}" is an IPv4 address in a non-canonical form; write it as ${hostname}`;
  }
  const labels = host.replace(/\.$/, "").split(".");
  if (!labels.every((l) => /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(l))) {
    return `"${host}" is not a DNS name: dot-separated labels of 1-63 letters, digits and '-', not starting or ending with '-'`;
  }
  return undefined;
}

/** host:port of a fork's backend. */
export const destinationSchema = z
  .string()
  .regex(/^[A-Za-z0-9.-]+:[0-9]{1,5}$/, {
    message: 'must be "host:port", e.g. "api.shard-alice.svc:8080"',
  })
  .refine((d) => {
    const port = Number(d.slice(d.lastIndexOf(":") + 1));
    return port >= 1 && port <= 65535;
  }, "port must be 1-65535")
  .superRefine((d, ctx) => {
    const problem = destinationHostProblem(d.slice(0, d.lastIndexOf(":")));
    if (problem !== undefined) ctx.addIssue({ code: "custom", message: problem });
  });

/** Longest TTL a shard may have: 7 days (the platform policy; every layer enforces this one value). */
export const MAX_SHARD_TTL_SECONDS = 7 * 86_400;

/**
 * How the gateway talks to a service upstream: `http1` (HTTP/1.1, also WebSocket upgrades),
 * `http2` (HTTP/2 cleartext, prior knowledge) or `grpc` (HTTP/2, what gRPC needs).
 */
export const serviceProtocolSchema = z.enum(["http1", "http2", "grpc"], {
  message: 'must be "http1", "http2" or "grpc"',
});
export type ServiceProtocol = z.infer<typeof serviceProtocolSchema>;
/** The protocol of a service that declares none. */
export const DEFAULT_SERVICE_PROTOCOL: ServiceProtocol = "http1";

/** `shards/<name>`: a registered dev shard. */
export const shardRecordSchema = z.strictObject({
  name: dnsLabel,
  /**
   * Random identity of this shard, fixed at creation: a shard deleted and created again under the
   * same name is another shard (another uid). Absent in records written before it existed; see
   * {@link shardUidOf}.
   */
  uid: z
    .string()
    .regex(/^[a-f0-9]{32}$/)
    .optional(),
  routingKey: routingKeySchema,
  owner: z.string().min(1).max(253),
  /** Baseline service name → the fork's destination host:port. */
  forks: z.record(dnsLabel, destinationSchema),
  /** Service → its fork's protocol, where it differs from the baseline's (absent = the same). */
  protocols: z.record(dnsLabel, serviceProtocolSchema).optional(),
  ttlSeconds: z.number().int().positive(),
  expiresAt: z.iso.datetime(),
  /** sha256 (hex) of the shard's bearer token; the token itself is never stored. */
  tokenHash: z.string().regex(/^[a-f0-9]{64}$/),
  createdAt: z.iso.datetime(),
});
export type ShardRecord = z.infer<typeof shardRecordSchema>;

/**
 * The identity of a shard: its `uid`, or for a record written before uids existed, a digest of
 * what is fixed at its creation (name, creation time, token hash), so it too changes when the
 * name is reused.
 */
export function shardUidOf(record: ShardRecord): string {
  if (record.uid !== undefined) return record.uid;
  return createHash("sha256")
    .update(`${record.name}\n${record.createdAt}\n${record.tokenHash}`)
    .digest("hex")
    .slice(0, 32);
}

/** A baseline service that shards may fork: what the routing controller routes by default. */
export const baselineServiceSchema = z.strictObject({
  name: dnsLabel,
  /** host:port of the shared baseline. */
  destination: destinationSchema,
  /**
   * More `Host` names the service's virtual host answers besides `<name>`, e.g.
   * `checkout.shop.svc.cluster.local`: the names callers inside the cluster use when the
   * baseline Service name resolves to the gateway (ADR 0012). Default none.
   */
  hosts: z
    .array(
      z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/, {
        message: 'must be a DNS name, e.g. "checkout.shop.svc.cluster.local"',
      }),
    )
    .optional(),
  /** How the gateway talks to it (and to its forks, unless a fork says otherwise). */
  protocol: serviceProtocolSchema.default(DEFAULT_SERVICE_PROTOCOL),
});
/** A baseline service; `protocol` may be left out (it defaults to http1). */
export type BaselineService = z.input<typeof baselineServiceSchema>;
