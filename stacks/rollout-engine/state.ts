/** The state of a rollout, as it is saved after every step and read back to resume. */
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { z } from "zod";
import type { RolloutPlan } from "../rollout-plan";
import { releaseSchema, type Release } from "./release";

/** Where one stack is in the rollout. */
export const StackPhase = {
  Pending: "pending",
  Updating: "updating",
  Updated: "updated",
  Healthy: "healthy",
  RollingBack: "rolling-back",
  RolledBack: "rolled-back",
} as const;
/** One of {@link StackPhase}. */
export type StackPhase = (typeof StackPhase)[keyof typeof StackPhase];

/** Where one wave is in the rollout. */
export const WavePhase = {
  Pending: "pending",
  Updating: "updating",
  Gating: "gating",
  Baking: "baking",
  Done: "done",
  RollingBack: "rolling-back",
  RolledBack: "rolled-back",
} as const;
/** One of {@link WavePhase}. */
export type WavePhase = (typeof WavePhase)[keyof typeof WavePhase];

/** How the whole rollout ended (so far). */
export const RolloutStatus = {
  Running: "running",
  Succeeded: "succeeded",
  Failed: "failed",
  Interrupted: "interrupted",
} as const;
/** One of {@link RolloutStatus}. */
export type RolloutStatus = (typeof RolloutStatus)[keyof typeof RolloutStatus];

const stackStateSchema = z.strictObject({
  wave: z.number().int().min(0),
  /**
   * Release before the rollout touched it; known once the wave started. A plain version string
   * in state files of rollouts that changed the version only (the image was left as it was):
   * resuming one reads the image the stack has now, which such a rollout never changed.
   */
  from: z.union([releaseSchema, z.string()]).optional(),
  /** The release it is updated to (a plain version in older state files). */
  to: z.union([releaseSchema, z.string().transform((version): Release => ({ version }))]),
  phase: z.enum(Object.values(StackPhase) as [StackPhase, ...StackPhase[]]),
  error: z.string().optional(),
});

/** The state file: validated when read back, since a person may have edited it. */
export const rolloutStateSchema = z.strictObject({
  version: z.string(),
  /** The image rolled out with `version`; absent: none (older state files: none). */
  image: z.string().optional(),
  status: z.enum(Object.values(RolloutStatus) as [RolloutStatus, ...RolloutStatus[]]),
  waves: z.array(
    z.strictObject({
      name: z.string(),
      stacks: z.array(z.string()),
      phase: z.enum(Object.values(WavePhase) as [WavePhase, ...WavePhase[]]),
      /** Epoch ms at which the bake ends (so a resumed bake only waits what is left). */
      bakeUntil: z.number().optional(),
    }),
  ),
  stacks: z.record(z.string(), stackStateSchema),
  failure: z.string().optional(),
});
/** A state as read from its file: a `from` may be a plain version (older state files). */
export type SavedRolloutState = z.output<typeof rolloutStateSchema>;
/** Where one stack is: as saved, with `from` always a whole release. */
export type StackState = Omit<SavedRolloutState["stacks"][string], "from"> & {
  from?: Release;
};
/** The state of a rollout (what {@link runRollout} saves and resolves with). */
export type RolloutState = Omit<SavedRolloutState, "stacks"> & {
  stacks: Record<string, StackState>;
};

/** A rollout that cannot start or resume: the message says why and what to do. */
export class RolloutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RolloutError";
  }
}

/** The release a state rolls out. */
export function releaseOf(state: SavedRolloutState): Release {
  return state.image === undefined
    ? { version: state.version }
    : { version: state.version, image: state.image };
}

/** The state a new rollout starts from. */
export function initialState(plan: RolloutPlan, release: Release): RolloutState {
  const stacks: RolloutState["stacks"] = {};
  plan.waves.forEach((wave, w) => {
    for (const stack of wave.stacks) {
      stacks[stack] = { wave: w, to: { ...release }, phase: "pending" };
    }
  });
  return {
    ...release,
    status: RolloutStatus.Running,
    waves: plan.waves.map((wave) => ({
      name: wave.name,
      stacks: [...wave.stacks],
      phase: WavePhase.Pending,
    })),
    stacks,
  };
}

/** Read a state file; undefined when there is none. */
export async function readState(file: string): Promise<SavedRolloutState | undefined> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new RolloutError(
      `state file ${file} is not JSON (${(error as Error).message}); fix it or move it away to start afresh`,
    );
  }
  const parsed = rolloutStateSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new RolloutError(
      `state file ${file} is not a rollout state (${issue?.path.join(".") ?? ""}: ${issue?.message ?? ""}); move it away to start afresh`,
    );
  }
  return parsed.data;
}

/** Write the state atomically (write a temp file, then rename), so a crash never leaves half. */
export async function writeState(file: string, state: RolloutState): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  const temp = `${file}.tmp`;
  await writeFile(temp, `${JSON.stringify(state, null, 2)}\n`);
  await rename(temp, file);
}
