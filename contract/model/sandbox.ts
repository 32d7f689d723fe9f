/**
 * Sandboxes: what a user submits (the spec, with its placement constraints), the lifecycle and
 * status, the `sandboxes/<id>` record and the `assignments/<node>/<id>` a node agent runs.
 */
import { z } from "zod";
import { driverSchema, resourcesSchema } from "./compute";
import { dnsLabel, labelKeySchema, labelsSchema, labelValueSchema, nodeName } from "./names";

/** Most entries of a sandbox's `nodeSelector` and of its `tolerations`. */
export const MAX_SELECTOR_ENTRIES = 32;

/** What a sandbox tolerates: a taint's key, and its value unless any value will do. */
export const tolerationSchema = z.strictObject({
  key: labelKeySchema,
  value: labelValueSchema.optional(),
});

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
