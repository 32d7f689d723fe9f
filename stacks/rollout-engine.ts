/**
 * The cross-cluster canary rollout as a resumable state machine: for each wave (the first is the
 * canary) update every stack to the new runtime release (a version, and the runtime image pinned by
 * digest), run the health gates until they pass or time out, bake, re-check, then go on. A failed
 * update or gate stops the rollout and rolls the failed wave back to the releases its stacks had.
 * The state is written to a JSON file after every step, so a rollout that was interrupted (Ctrl-C,
 * a crash) resumes where it stopped.
 *
 * Pulumi stays behind {@link StackUpdater} and the health checks behind {@link HealthGate}, so the
 * state machine runs the same against the Automation API (`stacks/rollout.ts`) and in tests.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { RolloutPlan } from "./rollout-plan";
import { describeRelease, releaseProblem, type Release } from "./rollout-engine/release";
import type { GateContext, GateResult, HealthGate, StackUpdater } from "./rollout-engine/seams";
import {
  StackPhase,
  WavePhase,
  RolloutStatus,
  type RolloutState,
  RolloutError,
  initialState,
  readState,
  releaseOf,
  writeState,
} from "./rollout-engine/state";

export {
  releaseSchema,
  type Release,
  describeRelease,
  releaseProblem,
} from "./rollout-engine/release";
export {
  type StackUpdater,
  type GateContext,
  type GateResult,
  type HealthGate,
} from "./rollout-engine/seams";
export {
  StackPhase,
  WavePhase,
  RolloutStatus,
  rolloutStateSchema,
  type SavedRolloutState,
  type StackState,
  type RolloutState,
  RolloutError,
  initialState,
  readState,
} from "./rollout-engine/state";

/** The plan as lines of text, for `--dry-run`. */
export function describePlan(
  plan: RolloutPlan,
  release: Release,
  currentReleases?: ReadonlyMap<string, Release>,
): string[] {
  const image = release.image === undefined ? "" : ` with image ${release.image}`;
  const lines = [
    `rollout of runtime version ${release.version}${image}, ${plan.waves.length} wave(s):`,
  ];
  plan.waves.forEach((wave, i) => {
    lines.push(`  wave ${i + 1} "${wave.name}"${i === 0 ? " (canary)" : ""}:`);
    for (const stack of wave.stacks) {
      const from = currentReleases?.get(stack);
      const target = plan.targets[stack];
      const where =
        target === undefined
          ? ""
          : ` (scheduler ${target.schedulerUrl ?? "from outputs"}, ${target.nodeAgents} node agent(s), ${target.xdsClients ?? "gatewayReplicas"} xDS client(s))`;
      const was = from === undefined ? "?" : describeRelease(from);
      lines.push(`    ${stack}: ${was} -> ${describeRelease(release)}${where}`);
    }
  });
  lines.push(
    `  gates: timeout ${plan.gates.timeout / 1000}s, retry every ${plan.gates.interval / 1000}s, synthetic sandbox SLO ${plan.gates.syntheticSandboxSlo / 1000}s, xDS clients "${plan.gates.xdsNodeId}" must ACK`,
    `  bake: ${plan.bake / 1000}s per wave`,
    `  state: ${plan.state}`,
  );
  return lines;
}

/**
 * The pre-flight of a rollout: every stack of the plan with its configured release, read before
 * anything changes. A stack that cannot be read, or that pins a runtime image while `release` has
 * none, is refused: one {@link RolloutError} with one line per stack. When `resume` is set, the
 * image rule is left to {@link runRollout}: a saved rollout of a version alone (a state file
 * written before releases) can take no `--image`, and what it has left may be a rollback, which
 * restores each stack's own release; the engine still checks every stack before deploying it
 * forward.
 */
export async function preflightReleases(
  plan: RolloutPlan,
  release: Release,
  updater: Pick<StackUpdater, "currentRelease">,
  /** How a read error is put in words; default its message. */
  explain: (error: unknown) => string = (error) => (error as Error).message,
  options: { readonly resume?: boolean | undefined } = {},
): Promise<Map<string, Release>> {
  const current = new Map<string, Release>();
  const problems: string[] = [];
  for (const stack of plan.waves.flatMap((w) => w.stacks)) {
    let had: Release;
    try {
      had = await updater.currentRelease(stack);
    } catch (error) {
      problems.push(`stack ${stack}: ${explain(error)}`);
      continue;
    }
    current.set(stack, had);
    if (options.resume === true) continue;
    const problem = releaseProblem(stack, had, release);
    if (problem !== undefined) problems.push(problem);
  }
  if (problems.length > 0) throw new RolloutError(problems.join("\n"));
  return current;
}

/** Options of {@link runRollout}. */
export interface RolloutOptions {
  readonly plan: RolloutPlan;
  /** What is rolled out: the version and, for stacks that run pods, the image pinned by digest. */
  readonly release: Release;
  readonly updater: StackUpdater;
  readonly gates: readonly HealthGate[];
  /** Continue the rollout saved in `plan.state` instead of starting one. */
  readonly resume?: boolean;
  /** Aborting stops the rollout at the next step and saves it as interrupted. */
  readonly signal?: AbortSignal;
  /**
   * Aborting cancels a running `pulumi up`; default `signal`. The CLI keeps them apart: after
   * Ctrl-C pulumi has had its SIGINT from the terminal already.
   */
  readonly cancelUpdates?: AbortSignal;
  /** Progress lines; default: stdout. */
  readonly progress?: (line: string) => void;
}

/** Run (or resume) a rollout; resolves with the final state (also saved to `plan.state`). */
export async function runRollout(options: RolloutOptions): Promise<RolloutState> {
  const { plan, release, updater, gates } = options;
  const { version } = release;
  const signal = options.signal ?? new AbortController().signal;
  const cancelUpdates = options.cancelUpdates ?? signal;
  const say = options.progress ?? ((line: string) => process.stdout.write(`${line}\n`));
  const state = await startingState(plan, release, updater, options.resume ?? false);
  const to = describeRelease(release);
  const save = () => writeState(plan.state, state);
  await save();

  const interrupted = async (): Promise<boolean> => {
    if (!signal.aborted) return false;
    state.status = RolloutStatus.Interrupted;
    await save();
    say(`interrupted; state saved to ${plan.state}; run again with --resume to continue`);
    return true;
  };

  const rollBack = async (w: number, reason: string): Promise<RolloutState> => {
    const wave = state.waves[w]!;
    wave.phase = WavePhase.RollingBack;
    state.failure ??= `wave "${wave.name}": ${reason}`;
    await save();
    say(`[${wave.name}] FAILED: ${reason}; rolling the wave back`);
    for (const stack of wave.stacks) {
      const s = state.stacks[stack]!;
      // Untouched stacks (and ones already restored) keep their release.
      if (s.from === undefined || s.phase === StackPhase.Pending) continue;
      if (s.phase === StackPhase.RolledBack) continue;
      const from = s.from;
      s.phase = StackPhase.RollingBack;
      await save();
      say(`[${wave.name}] ${stack}: rolling back to ${describeRelease(from)}`);
      try {
        await updater.deploy(stack, from, cancelUpdates);
      } catch (error) {
        // Cancelled: the rollback is saved half-done; --resume finishes it.
        if (await interrupted()) return state;
        throw error;
      }
      s.phase = StackPhase.RolledBack;
      await save();
      say(`[${wave.name}] ${stack}: rolled back to ${describeRelease(from)}`);
      if (await interrupted()) return state;
    }
    wave.phase = WavePhase.RolledBack;
    state.status = RolloutStatus.Failed;
    await save();
    say(`rollout of ${version} FAILED in wave "${wave.name}"; later waves were not touched`);
    return state;
  };

  /** Every gate on every stack of the wave; the first failure (after retries) is returned. */
  const gateWave = async (w: number): Promise<string | undefined> => {
    const wave = state.waves[w]!;
    for (const stack of wave.stacks) {
      const failure = await gateStack(stack);
      if (failure !== undefined) return `${stack}: ${failure}`;
      say(`[${wave.name}] ${stack}: all ${gates.length} gate(s) passed`);
    }
    return undefined;
  };

  const gateStack = async (stack: string): Promise<string | undefined> => {
    const deadline = Date.now() + plan.gates.timeout;
    const context: GateContext = {
      stack,
      version,
      syntheticSandboxSloMs: plan.gates.syntheticSandboxSlo,
      signal,
    };
    for (const gate of gates) {
      let last = "not checked";
      for (;;) {
        let result: GateResult;
        try {
          result = await gate.check(context);
        } catch (error) {
          result = { ok: false, reason: (error as Error).message };
        }
        if (result.ok) break;
        last = result.reason;
        if (Date.now() + plan.gates.interval > deadline || signal.aborted) {
          return `gate ${gate.name} did not pass within ${plan.gates.timeout / 1000}s: ${last}`;
        }
        await sleep(plan.gates.interval, undefined, { signal }).catch(() => undefined);
      }
    }
    return undefined;
  };

  if (state.status === RolloutStatus.Succeeded) {
    say(`rollout of ${version} already succeeded (${plan.state})`);
    return state;
  }
  state.status = RolloutStatus.Running;
  await save();

  for (let w = 0; w < state.waves.length; w++) {
    const wave = state.waves[w]!;
    if (wave.phase === WavePhase.Done) continue;
    if (wave.phase === WavePhase.RollingBack || wave.phase === WavePhase.RolledBack) {
      return rollBack(w, state.failure ?? "resumed a rollback");
    }
    if (await interrupted()) return state;

    if (wave.phase === WavePhase.Pending || wave.phase === WavePhase.Updating) {
      wave.phase = WavePhase.Updating;
      await save();
      say(`[${wave.name}] updating ${wave.stacks.length} stack(s) to ${to}`);
      for (const stack of wave.stacks) {
        const s = state.stacks[stack]!;
        if (s.phase === StackPhase.Updated || s.phase === StackPhase.Healthy) continue;
        const from = (s.from ??= await updater.currentRelease(stack));
        // The pre-flight refused this already; a stack's config may have changed since.
        const problem = releaseProblem(stack, from, release);
        if (problem !== undefined) {
          s.error = problem;
          return rollBack(w, problem);
        }
        s.phase = StackPhase.Updating;
        await save();
        say(`[${wave.name}] ${stack}: ${describeRelease(from)} -> ${to}: pulumi up`);
        try {
          await updater.deploy(stack, release, cancelUpdates);
        } catch (error) {
          // Cancelled by Ctrl-C, not failed: saved as interrupted; --resume deploys it again.
          if (await interrupted()) return state;
          s.error = (error as Error).message;
          return rollBack(w, `${stack}: update failed: ${s.error}`);
        }
        s.phase = StackPhase.Updated;
        await save();
        say(`[${wave.name}] ${stack}: updated`);
        if (await interrupted()) return state;
      }
      wave.phase = WavePhase.Gating;
      await save();
    }

    if (wave.phase === WavePhase.Gating) {
      say(`[${wave.name}] health gates: ${gates.map((g) => g.name).join(", ")}`);
      const failure = await gateWave(w);
      if (await interrupted()) return state;
      if (failure !== undefined) return rollBack(w, failure);
      for (const stack of wave.stacks) state.stacks[stack]!.phase = StackPhase.Healthy;
      wave.phase = WavePhase.Baking;
      wave.bakeUntil = Date.now() + plan.bake;
      await save();
    }

    if (wave.phase === WavePhase.Baking) {
      const left = Math.max(0, (wave.bakeUntil ?? 0) - Date.now());
      say(`[${wave.name}] baking for ${Math.round(left / 1000)}s`);
      await sleep(left, undefined, { signal }).catch(() => undefined);
      if (await interrupted()) return state;
      // Re-check after the bake: a version that degrades over time fails here, not in production.
      const failure = await gateWave(w);
      if (await interrupted()) return state;
      if (failure !== undefined) return rollBack(w, `after bake: ${failure}`);
      wave.phase = WavePhase.Done;
      await save();
      say(`[${wave.name}] done`);
    }
  }
  state.status = RolloutStatus.Succeeded;
  await save();
  say(`rollout of ${version} succeeded on ${Object.keys(state.stacks).length} stack(s)`);
  return state;
}

/** The flags that name a release: `--version 0.2.0 --image …`. */
function releaseFlags(release: Release): string {
  return `--version ${release.version}${release.image === undefined ? " without --image" : ` --image ${release.image}`}`;
}

/**
 * A fresh state, or the saved one when resuming (after checking it belongs to this rollout). A
 * saved `from` that is a plain version (a rollout that changed the version only) becomes the
 * release the stack had: that version and the image the stack has now, which such a rollout
 * never changed.
 */
async function startingState(
  plan: RolloutPlan,
  release: Release,
  updater: StackUpdater,
  resume: boolean,
): Promise<RolloutState> {
  const saved = await readState(plan.state);
  if (!resume) {
    if (saved !== undefined && saved.status !== RolloutStatus.Succeeded) {
      throw new RolloutError(
        `a rollout of ${describeRelease(releaseOf(saved))} is saved in ${plan.state} (status ${saved.status}); pass --resume to continue it, or move the file away to start a new rollout`,
      );
    }
    return initialState(plan, release);
  }
  if (saved === undefined) {
    throw new RolloutError(`--resume: no rollout state at ${plan.state}; run without --resume`);
  }
  if (saved.version !== release.version) {
    throw new RolloutError(
      `--resume: ${plan.state} is a rollout of ${saved.version}, not ${release.version}; pass --version ${saved.version}`,
    );
  }
  if (saved.image !== release.image) {
    throw new RolloutError(
      `--resume: ${plan.state} is a rollout of ${describeRelease(releaseOf(saved))}, not ${describeRelease(release)}; pass ${releaseFlags(releaseOf(saved))}`,
    );
  }
  const planned = JSON.stringify(plan.waves.map((w) => [w.name, w.stacks]));
  const stored = JSON.stringify(saved.waves.map((w) => [w.name, w.stacks]));
  if (planned !== stored) {
    throw new RolloutError(
      `--resume: the waves in the plan changed since the rollout started; restore the plan or move ${plan.state} away`,
    );
  }
  if (saved.status === RolloutStatus.Failed) {
    throw new RolloutError(
      `--resume: the rollout of ${saved.version} failed and was rolled back (${saved.failure ?? "see state"}); fix the version and start a new rollout after moving ${plan.state} away`,
    );
  }
  const stacks: RolloutState["stacks"] = {};
  for (const [stack, { from, ...s }] of Object.entries(saved.stacks)) {
    if (typeof from !== "string") {
      stacks[stack] = from === undefined ? s : { ...s, from };
      continue;
    }
    const { image } = await updater.currentRelease(stack);
    stacks[stack] = {
      ...s,
      from: image === undefined ? { version: from } : { version: from, image },
    };
  }
  return { ...saved, stacks };
}
