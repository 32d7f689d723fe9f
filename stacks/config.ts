/**
 * The stack configuration (`shardworks:*` keys of `Pulumi.<stack>.yaml`) as a zod schema.
 *
 * `parseStackConfig` is pure (plain object in, typed config out) so that every rule can be
 * table-tested; `loadStackConfig` reads the Pulumi config and calls it before the program
 * registers any resource, so a bad stack fails with one line per problem, each naming the key
 * path and what is allowed.
 */
import * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import { platformComponentIssues, shardComponentIssues } from "./component-checks";
import { CONFIG_NAMESPACE, StackKind } from "./config/fields";
import { platformConfigSchema } from "./config/platform";
import { shardConfigSchema } from "./config/shard";

export {
  CONFIG_NAMESPACE,
  MAX_JIT_CEILING_MS,
  MAX_SHARD_TTL_MS,
  PINNED_IMAGE,
  PlatformTarget,
  StackKind,
} from "./config/fields";
export {
  nodeGroupSchema,
  gatewaySchema,
  runtimeSchema,
  subjectSchema,
  accessSchema,
  baselineSchema,
  platformConfigSchema,
  type NodeGroupConfig,
  type GatewayConfig,
  type RuntimeConfig,
  type SubjectConfig,
  type AccessConfig,
  type BaselineConfig,
  type PlatformConfig,
} from "./config/platform";
export { forkSchema, shardConfigSchema, type ForkConfig, type ShardConfig } from "./config/shard";

/**
 * Any stack's config. Once the schema's own rules pass, the components' validators run on it
 * too (`component-checks.ts`): config that a component would reject fails here, not after
 * resources were registered.
 */
export const stackConfigSchema = z
  .discriminatedUnion("kind", [platformConfigSchema, shardConfigSchema])
  .superRefine((config, ctx) => {
    // Only a config that passed the schema's own rules: the same mistake is not reported twice.
    if (ctx.issues.length > 0) return;
    const issues =
      config.kind === StackKind.Platform
        ? platformComponentIssues(config)
        : shardComponentIssues(config);
    for (const issue of issues) ctx.addIssue({ code: "custom", ...issue });
  });
export type StackConfig = z.output<typeof stackConfigSchema>;

/** Invalid stack config: one line per problem, `shardworks:<path>: <what is wrong and allowed>`. */
export class StackConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(problems.join("\n"));
    this.name = "StackConfigError";
  }
}

/** `nodeGroups[1].instanceType` from a zod path. */
function keyPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else out += out === "" ? String(part) : `.${String(part)}`;
  }
  return out;
}

/**
 * Messages for zod's generic issues, used where a schema gives none. Written for a person
 * editing YAML: what was found, what is allowed.
 */
const configErrorMap: z.core.$ZodErrorMap = (issue) => {
  switch (issue.code) {
    case "invalid_type":
      return issue.input === undefined
        ? `is required (${issue.expected})`
        : `expected ${issue.expected}, got ${JSON.stringify(issue.input)}`;
    case "invalid_value":
      return `${JSON.stringify(issue.input)} is not allowed; allowed: ${issue.values.map((v) => JSON.stringify(v)).join(", ")}`;
    case "invalid_key":
      return `is not a valid name: ${issue.issues[0]?.message ?? "invalid"}`;
    case "too_small":
      if (issue.origin === "string") return `must be at least ${issue.minimum} characters`;
      if (issue.origin === "array") return `needs at least ${issue.minimum} entries`;
      return `${JSON.stringify(issue.input)} is less than the minimum ${issue.minimum}`;
    case "too_big":
      if (issue.origin === "string") return `must be at most ${issue.maximum} characters`;
      if (issue.origin === "array") return `allows at most ${issue.maximum} entries`;
      return `${JSON.stringify(issue.input)} is more than the maximum ${issue.maximum}`;
    case "invalid_union":
      return `must be "platform" or "shard"`;
    default:
      return undefined;
  }
};

/**
 * Validate a plain object of `shardworks:*` values (keys without the namespace). Pure: throws
 * {@link StackConfigError} listing every problem, returns the config with defaults applied.
 */
export function parseStackConfig(raw: unknown): StackConfig {
  const result = stackConfigSchema.safeParse(raw, { error: configErrorMap, reportInput: true });
  if (result.success) return result.data;
  const problems = result.error.issues.flatMap((issue) =>
    // One line per unknown key, at the key's own path, so the line says exactly what to fix.
    issue.code === "unrecognized_keys"
      ? issue.keys.map(
          (key) =>
            `${CONFIG_NAMESPACE}:${keyPath([...issue.path, key])}: unknown key; check the spelling against docs/readme/components.md`,
        )
      : [`${CONFIG_NAMESPACE}:${keyPath(issue.path)}: ${issue.message}`],
  );
  throw new StackConfigError(problems);
}

/**
 * Turn Pulumi's config values (all strings; objects and lists as JSON) into plain values.
 * Scalars stay strings except `true`/`false` of boolean keys (`skipAwait`), so a version like "1.33" is not read as a number.
 */
export function configValues(all: Record<string, string>): Record<string, unknown> {
  const prefix = `${CONFIG_NAMESPACE}:`;
  const out: Record<string, unknown> = {};
  for (const [key, text] of Object.entries(all)) {
    if (!key.startsWith(prefix)) continue;
    const name = key.slice(prefix.length);
    if (BOOLEAN_KEYS.has(name) && (text === "true" || text === "false"))
      out[name] = text === "true";
    else if (/^\s*[[{]/.test(text)) {
      try {
        out[name] = JSON.parse(text);
      } catch {
        out[name] = text;
      }
    } else out[name] = text;
  }
  return out;
}

/** Top-level keys whose value is a boolean; any other `"true"` (an owner named so) stays a string. */
const BOOLEAN_KEYS = new Set(["skipAwait"]);

/** Read and validate this stack's `shardworks:*` config; call before registering any resource. */
export function loadStackConfig(): StackConfig {
  return parseStackConfig(configValues(pulumi.runtime.allConfig()));
}
