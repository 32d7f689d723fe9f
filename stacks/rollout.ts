/**
 * `npm run rollout -- --plan stacks/rollout.<name>.yaml --version <v> [--image <name@sha256:…>]
 * [--dry-run] [--resume]`: the cross-cluster canary rollout of a runtime release (version and
 * image pinned by digest) to the platform stacks (the state machine is in `rollout-engine.ts`).
 * Pulumi runs through the Automation API with our program (`index.ts`) inline: one program per
 * process, and the stacks are updated one at a time (never two `createOrSelectStack` in parallel
 * in one workspace).
 */
import { resolve } from "node:path";
import { Command, CommanderError } from "commander";
import { LocalWorkspace, type PulumiCommand, type PulumiFn } from "@pulumi/pulumi/automation";
import { Env } from "../contract";
import { runtimeSchema } from "./config";
import { loadPlan, RolloutPlanError, type RolloutPlan } from "./rollout-plan";
import {
  describePlan,
  preflightReleases,
  RolloutError,
  RolloutStatus,
  runRollout,
  type Release,
  type StackUpdater,
} from "./rollout-engine";
import { gateClient, rolloutGates, schedulerUrlOf } from "./rollout-gates";

/** The config keys a rollout changes (paths into `shardworks:runtime`). */
export const RUNTIME_VERSION_KEY = "shardworks:runtime.version";
export const RUNTIME_IMAGE_KEY = "shardworks:runtime.image";

/** The two fields of `shardworks:runtime` a release is made of. */
const releaseConfigSchema = runtimeSchema.pick({ version: true, image: true });

/** Options of {@link AutomationStackUpdater}. */
export interface AutomationStackUpdaterOptions {
  /** Project directory: `Pulumi.yaml` and the stack config files. */
  readonly workDir: string;
  /**
   * The inline program, run in this process. Absent: the project directory's own program, run by
   * the `pulumi-language-nodejs` on PATH, as `pulumi up` there would.
   */
  readonly program?: PulumiFn;
  /** Project name for inline stacks; default: the one in `Pulumi.yaml`. */
  readonly projectName?: string;
  readonly envVars?: Record<string, string>;
  readonly pulumiCommand?: PulumiCommand;
  /** Engine output lines (default: dropped; progress lines say what happens). */
  readonly onOutput?: (line: string) => void;
}

/**
 * {@link StackUpdater} over the Automation API: set `shardworks:runtime.version` and
 * `shardworks:runtime.image` (or remove the image, for a release without one), `up`.
 */
export class AutomationStackUpdater implements StackUpdater {
  readonly #options: AutomationStackUpdaterOptions;

  constructor(options: AutomationStackUpdaterOptions) {
    this.#options = options;
  }

  async #stack(name: string) {
    const { workDir, program, envVars, pulumiCommand } = this.#options;
    if (program === undefined) {
      return LocalWorkspace.selectStack({ stackName: name, workDir }, { envVars, pulumiCommand });
    }
    const projectName =
      this.#options.projectName ??
      (await (await LocalWorkspace.create({ workDir, envVars, pulumiCommand })).projectSettings())
        .name;
    return LocalWorkspace.selectStack(
      { stackName: name, projectName, program },
      { workDir, envVars, pulumiCommand },
    );
  }

  /** An output of a stack (undefined when it does not export it). */
  async #output(name: string, key: string): Promise<unknown> {
    const outputs = await (await this.#stack(name)).outputs();
    return outputs[key]?.value;
  }

  /** The scheduler API URL the platform stack exports (`runtimeApiUrl`). */
  async schedulerUrl(name: string): Promise<string> {
    const url = await this.#output(name, "runtimeApiUrl");
    if (typeof url !== "string") {
      throw new Error(
        `stack ${name} has no output runtimeApiUrl; run \`pulumi up\` on it, or set targets.${name}.schedulerUrl in the plan`,
      );
    }
    return url;
  }

  /** How many gateway replicas the platform stack runs (`gatewayReplicas`), if it says. */
  async gatewayReplicas(name: string): Promise<number | undefined> {
    const replicas = await this.#output(name, "gatewayReplicas");
    return typeof replicas === "number" ? replicas : undefined;
  }

  /**
   * The configured version (the schema's default when the stack sets none) and image. A value the
   * schema refuses is an error naming the key: rolling back to a guess would be worse.
   */
  async currentRelease(name: string): Promise<Release> {
    const stack = await this.#stack(name);
    return releaseOfConfig((await stack.getAllConfig())["shardworks:runtime"]?.value);
  }

  async deploy(name: string, release: Release, signal?: AbortSignal): Promise<void> {
    const stack = await this.#stack(name);
    await stack.setConfig(RUNTIME_VERSION_KEY, { value: release.version }, true);
    if (release.image !== undefined) {
      await stack.setConfig(RUNTIME_IMAGE_KEY, { value: release.image }, true);
    } else if (
      releaseOfConfig((await stack.getAllConfig())["shardworks:runtime"]?.value).image !== undefined
    ) {
      // Back to a release that pinned no image: `<imageRepository>:<version>` again.
      await stack.removeConfig(RUNTIME_IMAGE_KEY, true);
    }
    let result;
    try {
      // The Automation API listens for an abort during `up` only: one that came earlier
      // (during setConfig) would be missed, and the update would run anyway.
      signal?.throwIfAborted();
      result = await stack.up({
        onOutput: this.#options.onOutput,
        ...(signal === undefined ? {} : { signal }),
      });
    } catch (error) {
      throw new Error(engineMessage(error), { cause: error });
    }
    if (result.summary.result !== "succeeded") {
      throw new Error(`pulumi up of ${name} ended ${result.summary.result}`);
    }
  }
}

/**
 * The release in a stack's `shardworks:runtime` config value (JSON text; undefined when the stack
 * sets none): its version (default the schema's) and image.
 */
export function releaseOfConfig(runtime: string | undefined): Release {
  const raw: unknown = runtime === undefined ? {} : JSON.parse(runtime);
  const fields =
    typeof raw === "object" && raw !== null && !Array.isArray(raw)
      ? (raw as Record<string, unknown>)
      : {};
  const parsed = releaseConfigSchema.safeParse({ version: fields.version, image: fields.image });
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(
      `shardworks:runtime.${issue?.path.join(".") ?? ""}: ${issue?.message ?? "invalid"}; fix it in the stack's config (pulumi config set --path)`,
    );
  }
  const { version, image } = parsed.data;
  return image === undefined ? { version } : { version, image };
}

/** The engine's error is its whole stderr; its `error:` lines are what a person needs. */
export function engineMessage(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const lines = message
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l.startsWith("error:"));
  return lines.length > 0 ? [...new Set(lines)].join("; ") : message;
}

/**
 * Every stack's scheduler API answers from here and takes the token: a rollout whose gates cannot
 * reach a cluster would deploy the canary, time out and roll it back for nothing.
 */
async function reachable(
  plan: RolloutPlan,
  updater: AutomationStackUpdater,
  token: string,
): Promise<void> {
  const problems: string[] = [];
  for (const stack of plan.waves.flatMap((w) => w.stacks)) {
    let url: string;
    try {
      url = await schedulerUrlOf(plan, updater, stack);
    } catch (error) {
      problems.push(`stack ${stack}: ${(error as Error).message}`);
      continue;
    }
    try {
      // An authenticated call: a wrong token would fail every gate after the canary was deployed.
      const { status } = await gateClient(url, token).request("GET", "/v1/nodes", {
        timeoutMs: 5000,
      });
      if (status === 401 || status === 403) {
        problems.push(
          `stack ${stack}: the scheduler API at ${url} refuses the platform token (${status}); pass the stack's platform token (--platform-token or $SHARDWORKS_PLATFORM_TOKEN)`,
        );
      } else if (status !== 200) {
        problems.push(`stack ${stack}: GET ${url}/v1/nodes answered ${status}`);
      }
    } catch (error) {
      // gateClient's error already says "<origin> does not answer (<cause>)".
      problems.push(
        `stack ${stack}: the scheduler API at ${(error as Error).message}; set targets.${stack}.schedulerUrl in the plan (a port-forward or an internal load balancer)`,
      );
    }
  }
  if (problems.length > 0) throw new RolloutError(problems.join("\n"));
}

/** Our program (`index.ts`), evaluated afresh for each stack: it builds the stack on import. */
function indexProgram(indexPath: string): PulumiFn {
  return () => {
    delete require.cache[require.resolve(indexPath)];
    // require, not import(): only require's cache can be cleared to evaluate it again.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return Promise.resolve(require(indexPath) as Record<string, unknown>);
  };
}

/** The CLI; returns the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const program = new Command("rollout")
    .description("Roll a runtime version out to the platform stacks, wave by wave")
    .requiredOption("--plan <file>", "rollout plan, e.g. stacks/rollout.local.yaml")
    .requiredOption("--version <v>", "runtime version to roll out, e.g. 0.2.0")
    .option(
      "--image <name@sha256:digest>",
      "runtime image of that version, pinned by digest (`npm run images -- build runtime` prints it); required for stacks that pin runtime.image",
    )
    .option("--dry-run", "print the plan and the stacks' current releases; change nothing")
    .option("--resume", "continue the rollout saved in the plan's state file")
    .option("--platform-token <token>", "scheduler API token (default: $SHARDWORKS_PLATFORM_TOKEN)")
    .option(
      "--work-dir <dir>",
      "project directory with Pulumi.yaml and the stacks' config (default: this repository)",
    )
    .option(
      "--synthetic-image <image>",
      "image of the synthetic sandbox (runs `true`)",
      "docker.io/library/busybox:1.37",
    )
    .exitOverride();
  try {
    program.parse(argv, { from: "user" });
  } catch (error) {
    // --help and --version print and end with 0; a usage error has printed its message.
    return error instanceof CommanderError ? (error.exitCode === 0 ? 0 : 2) : 2;
  }
  const opts = program.opts<{
    plan: string;
    version: string;
    image?: string;
    dryRun?: boolean;
    resume?: boolean;
    platformToken?: string;
    workDir?: string;
    syntheticImage: string;
  }>();
  const version = runtimeSchema.shape.version.safeParse(opts.version);
  if (!version.success) {
    process.stderr.write(`--version: ${version.error.issues[0]?.message ?? "invalid"}\n`);
    return 2;
  }
  const image = runtimeSchema.shape.image.safeParse(opts.image);
  if (!image.success) {
    process.stderr.write(`--image: ${image.error.issues[0]?.message ?? "invalid"}\n`);
    return 2;
  }
  const release: Release =
    image.data === undefined
      ? { version: version.data }
      : { version: version.data, image: image.data };
  const repoRoot = resolve(__dirname, "..");
  try {
    const plan = await loadPlan(opts.plan);
    const updater = new AutomationStackUpdater({
      workDir: resolve(opts.workDir ?? repoRoot),
      program: indexProgram(resolve(repoRoot, "index.ts")),
    });
    if (opts.dryRun) {
      const current = await preflightReleases(plan, release, updater, engineMessage);
      for (const line of describePlan(plan, release, current)) console.log(line);
      return 0;
    }
    // An empty value (e.g. `SHARDWORKS_PLATFORM_TOKEN=` in a CI file) is as good as none.
    const token = opts.platformToken || process.env[Env.platformToken];
    if (!token) {
      process.stderr.write(
        "--platform-token (or $SHARDWORKS_PLATFORM_TOKEN) is required: the health gates call the scheduler API\n",
      );
      return 2;
    }
    await preflightReleases(plan, release, updater, engineMessage, { resume: opts.resume });
    await reachable(plan, updater, token);
    // Ctrl-C reaches pulumi too (same process group): the rollout only stops after it, as sending
    // it a second SIGINT would make pulumi stop at once, not cleanly. SIGTERM (a CI cancel) does
    // not reach pulumi: that one is forwarded to the running update.
    const abort = new AbortController();
    const cancelUpdates = new AbortController();
    const stop = () => abort.abort();
    const terminate = () => {
      cancelUpdates.abort();
      abort.abort();
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", terminate);
    const state = await runRollout({
      plan,
      release,
      updater,
      gates: rolloutGates(plan, {
        token,
        outputs: updater,
        syntheticSandbox: { image: opts.syntheticImage, command: ["true"] },
      }),
      resume: opts.resume ?? false,
      signal: abort.signal,
      cancelUpdates: cancelUpdates.signal,
    });
    process.off("SIGINT", stop);
    process.off("SIGTERM", terminate);
    return state.status === RolloutStatus.Succeeded ? 0 : 1;
  } catch (error) {
    if (error instanceof RolloutPlanError || error instanceof RolloutError) {
      process.stderr.write(`${error.message}\n`);
      return 2;
    }
    throw error;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`rollout failed: ${(error as Error).message}\n`);
      process.exit(1);
    },
  );
}
