/**
 * The rollout plan (`stacks/rollout.<name>.yaml`) as a zod schema: which platform stacks are
 * updated in which wave (the first wave is the canary), how long the health gates may take, how
 * long a healthy wave bakes, and where the rollout's state is saved so it can resume.
 *
 * `parsePlan` is pure (plain object in, typed plan out) so every rule is table-tested;
 * `loadPlan` reads the YAML file and resolves the state path next to it.
 */
import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { GATEWAY_NODE_ID } from "../contract";
import { parseDuration } from "./duration";

/** Pulumi stack names as the Automation API selects them: `name` or `org/project/name`. */
const STACK_NAME = /^([A-Za-z0-9_.-]+\/){0,2}[A-Za-z0-9_.-]+$/;
const WAVE_NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

/** The longest any single duration in a plan may be: 24 hours. */
export const MAX_PLAN_DURATION_MS = 86_400_000;

/** A duration string (`"30s"`, `"5m"`, `"1h30m"`) turned into milliseconds. */
const duration = z.string().transform((text, ctx) => {
  const ms = parseDuration(text);
  if (ms === undefined) {
    ctx.addIssue({
      code: "custom",
      message: `${JSON.stringify(text)} is not a duration; use e.g. "30s", "5m" or "1h30m"`,
    });
    return z.NEVER;
  }
  if (ms > MAX_PLAN_DURATION_MS) {
    ctx.addIssue({
      code: "custom",
      message: `${JSON.stringify(text)} is longer than the maximum of 24h`,
    });
    return z.NEVER;
  }
  return ms;
});

/** One wave: stacks updated together, gated together, baked together. */
export const waveSchema = z.strictObject({
  /** Shown in progress lines; absent = `canary` for the first wave, `wave-<n>` for the others. */
  name: z
    .string()
    .regex(WAVE_NAME, { message: 'must be a lowercase name like "canary" or "wave-2"' })
    .optional(),
  /** Platform stack names, e.g. `platform-local-a` or `organization/shardworks/platform-a`. */
  stacks: z
    .array(
      z.string().regex(STACK_NAME, {
        message:
          'must be a stack name, e.g. "platform-local" or "organization/shardworks/platform-a"',
      }),
    )
    .min(1, { message: "needs at least one stack" }),
});

/** How the health gates run after a wave is updated. */
export const gatesSchema = z.strictObject({
  /** How long all gates of one stack may take before the wave fails. Default 5m. */
  timeout: duration.prefault("5m"),
  /** Pause between two attempts of a gate that is not yet healthy. Default 2s. */
  interval: duration.prefault("2s"),
  /** The synthetic sandbox must run to completion within this SLO. Default 30s. */
  syntheticSandboxSlo: duration.prefault("30s"),
  /** Node id of the xDS clients that must ACK the current configuration. Default the gateway's. */
  xdsNodeId: z.string().min(1).default(GATEWAY_NODE_ID),
});

/**
 * How the gates reach one stack's scheduler API from where the rollout runs, when the stack's
 * output (an in-cluster address) does not answer there, and how much runtime it must have.
 */
export const targetSchema = z.strictObject({
  /** Scheduler API base URL; default the stack's `runtimeApiUrl` output. */
  schedulerUrl: z
    .url({ protocol: /^https?$/, message: 'must be an http(s) URL, e.g. "http://127.0.0.1:7070"' })
    .optional(),
  /** Node agents that must be registered; default 1. */
  nodeAgents: z.number().int().min(1, { message: "must be at least 1" }).default(1),
  /** xDS clients (of `gates.xdsNodeId`) that must ACK; default the stack's `gatewayReplicas`. */
  xdsClients: z.number().int().min(1, { message: "must be at least 1" }).optional(),
});
/** A validated target. */
export type Target = z.output<typeof targetSchema>;

/** A whole plan file. */
export const rolloutPlanSchema = z
  .strictObject({
    /** Waves in order; the first is the canary. */
    waves: z.array(waveSchema).min(1, { message: "needs at least one wave (the canary)" }),
    gates: gatesSchema.prefault({}),
    /** How long a healthy wave is watched (gates re-run at the end) before the next wave. */
    bake: duration.prefault("10m"),
    /** State file (JSON); relative paths are relative to the plan file. */
    state: z.string().min(1, { message: 'must be a file path, e.g. ".rollout/local.json"' }),
    /** Per stack: where the gates reach its runtime, and how many node agents it must have. */
    targets: z.record(z.string(), targetSchema).default({}),
  })
  .superRefine((plan, ctx) => {
    const seen = new Map<string, number>();
    plan.waves.forEach((wave, w) => {
      wave.stacks.forEach((stack, s) => {
        const earlier = seen.get(stack);
        if (earlier !== undefined) {
          ctx.addIssue({
            code: "custom",
            path: ["waves", w, "stacks", s],
            message: `${JSON.stringify(stack)} is already in waves[${earlier}]; a stack is updated once`,
          });
        } else seen.set(stack, w);
      });
    });
    for (const stack of Object.keys(plan.targets)) {
      if (!seen.has(stack)) {
        ctx.addIssue({
          code: "custom",
          path: ["targets", stack],
          message: `${JSON.stringify(stack)} is in no wave; list it in waves or remove it`,
        });
      }
    }
    const names = new Set<string>();
    plan.waves.forEach((wave, w) => {
      if (wave.name === undefined) return;
      if (names.has(wave.name)) {
        ctx.addIssue({
          code: "custom",
          path: ["waves", w, "name"],
          message: `${JSON.stringify(wave.name)} is used by another wave`,
        });
      }
      names.add(wave.name);
    });
  })
  .transform((plan) => ({
    ...plan,
    waves: plan.waves.map((wave, i) => ({
      name: wave.name ?? (i === 0 ? "canary" : `wave-${i + 1}`),
      stacks: wave.stacks,
    })),
  }));

/** A validated plan; durations are milliseconds. */
export type RolloutPlan = z.output<typeof rolloutPlanSchema>;
/** A validated wave (always named). */
export type Wave = RolloutPlan["waves"][number];

/** The gate settings of one stack: its entry in `targets`, or the defaults. */
export function targetOf(plan: RolloutPlan, stack: string): Target {
  return plan.targets[stack] ?? targetSchema.parse({});
}

/** An invalid plan: one line per problem, `<key path>: <what is wrong and allowed>`. */
export class RolloutPlanError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(problems.join("\n"));
    this.name = "RolloutPlanError";
  }
}

/** `waves[1].stacks[0]` from a zod path. */
function keyPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else out += out === "" ? String(part) : `.${String(part)}`;
  }
  return out === "" ? "(plan)" : out;
}

/** zod's generic issues in words for a person editing YAML. */
const planErrorMap: z.core.$ZodErrorMap = (issue) => {
  switch (issue.code) {
    case "invalid_type":
      return issue.input === undefined
        ? `is required (${issue.expected})`
        : `expected ${issue.expected}, got ${JSON.stringify(issue.input)}`;
    case "too_small":
      if (issue.origin === "string") return `must be at least ${issue.minimum} characters`;
      return undefined;
    default:
      return undefined;
  }
};

/** Validate a plan object. Pure: throws {@link RolloutPlanError} listing every problem. */
export function parsePlan(raw: unknown): RolloutPlan {
  const result = rolloutPlanSchema.safeParse(raw, { error: planErrorMap, reportInput: true });
  if (result.success) return result.data;
  const problems = result.error.issues.flatMap((issue) =>
    issue.code === "unrecognized_keys"
      ? issue.keys.map(
          (key) =>
            `${keyPath([...issue.path, key])}: unknown key; allowed keys are described in docs/readme/rollout.md`,
        )
      : [`${keyPath(issue.path)}: ${issue.message}`],
  );
  throw new RolloutPlanError(problems);
}

/** Read, parse and validate a plan file; the state path comes back absolute. */
export async function loadPlan(file: string): Promise<RolloutPlan> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    throw new RolloutPlanError([`cannot read plan file ${file}: ${(error as Error).message}`]);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (error) {
    throw new RolloutPlanError([`${file} is not valid YAML: ${(error as Error).message}`]);
  }
  const plan = parsePlan(raw);
  return { ...plan, state: resolve(dirname(resolve(file)), plan.state) };
}
