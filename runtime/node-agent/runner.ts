/**
 * Running a node's sandboxes and reporting them: the claim (`scheduled` → `starting`), the run,
 * the `running` status, and how the run ended (kept in `final.json` until etcd holds it).
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { backoffDelay } from "../lib/backoff";
import { logger } from "../lib/logger";
import {
  registryAccessOf,
  SandboxPhase,
  type SandboxRecord,
  type SandboxStatus,
} from "../../contract/model";
import { TERMINAL_PHASES } from "../lib/store";
import type { AgentContext } from "./config";
import type { RunningSandbox } from "./driver";
import { persistFinalReport, type FinalReport } from "./final-report";
import type { LocalSandbox } from "./sandbox-state";
import { reportStatus, STATUS_WRITE_BACKOFF, type WriteAttempt } from "./status-report";
import { WarmPools } from "./warm-pools";

/** Runs and reports the sandboxes of one agent. */
export class SandboxRunner {
  readonly #ctx: AgentContext;
  /** Starts in flight (close waits for them). */
  readonly #startTasks = new Set<Promise<void>>();
  readonly warmPools: WarmPools;

  constructor(ctx: AgentContext) {
    this.#ctx = ctx;
    this.warmPools = new WarmPools({
      driver: ctx.config.driver,
      node: ctx.config.name,
      perImage: ctx.config.warmPerImage,
      idleSeconds: ctx.config.warmIdleSeconds,
      maxImages: ctx.config.warmMaxImages,
    });
  }

  get #name(): string {
    return this.#ctx.config.name;
  }

  /** Where a sandbox's files live on this node. */
  sandboxDir(id: string): string {
    return join(this.#ctx.config.dataDir, "sandboxes", id);
  }

  /** The log file of a sandbox on this node. */
  logFile(id: string): string {
    return join(this.sandboxDir(id), "output.log");
  }

  /** What the driver is asked to run (or to accept by migration) for a record. */
  runRequest(record: SandboxRecord) {
    return {
      id: record.id,
      spec: record.spec,
      workDir: join(this.sandboxDir(record.id), "work"),
      logFile: this.logFile(record.id),
    };
  }

  /** Start a sandbox assigned here under `generation`, in the background (it is `starting`). */
  begin(record: SandboxRecord, generation: string): void {
    const { sandboxes } = this.#ctx;
    const id = record.id;
    sandboxes.set(id, "starting", true);
    const task = this.#startSandbox(record, generation).finally(() => {
      sandboxes.delete(id, "starting");
      this.#startTasks.delete(task);
    });
    this.#startTasks.add(task);
  }

  /** Resolves once the starts in flight are over. */
  async idle(): Promise<void> {
    await Promise.all([...this.#startTasks]);
  }

  async #startSandbox(record: SandboxRecord, generation: string): Promise<void> {
    const { config, events, signal } = this.#ctx;
    const id = record.id;
    // The claim: `scheduled` → `starting`, by CAS on the record and the assignment's generation.
    // Only the writer of that transition runs the sandbox; the placer reschedules only what is
    // still `scheduled`. While etcd is away the claim is retried for as long as it takes (a lost
    // answer is recognised: the record then holds exactly what was written).
    const attempt: WriteAttempt = {};
    let claimed = false;
    for (let failures = 0; ; failures++) {
      if (signal.aborted) return;
      try {
        claimed = await this.#report(
          id,
          generation,
          (s) =>
            s.phase === SandboxPhase.Scheduled
              ? { phase: SandboxPhase.Starting, reason: undefined }
              : undefined,
          attempt,
        );
        break;
      } catch (error) {
        events.emit("error", error as Error);
        await sleep(backoffDelay(failures, STATUS_WRITE_BACKOFF));
      }
    }
    if (!claimed) return;
    const request = this.runRequest(record);
    let running: RunningSandbox;
    try {
      await mkdir(request.workDir, { recursive: true });
      await config.driver.prepare(record.spec.image, registryAccessOf(record.spec));
      running = await config.driver.run(request);
    } catch (error) {
      const reason = `could not start: ${(error as Error).message}`;
      logger.warn({ node: this.#name, sandbox: id, err: error }, "sandbox failed to start");
      await this.recordFinal(id, generation, { phase: SandboxPhase.Failed, reason });
      events.emit("finished", { id, phase: SandboxPhase.Failed });
      return;
    }
    if (signal.aborted) {
      await running.stop();
      await this.recordFinal(id, generation, {
        phase: SandboxPhase.Failed,
        reason: `stopped: the node agent on ${this.#name} shut down while the sandbox started`,
      });
      return;
    }
    const local = this.adopt(id, running, generation);
    local.unreported = {
      phase: SandboxPhase.Running,
      start: running.start,
      startMillis: running.startMillis,
      endpoints: { ...running.endpoints },
    };
    await this.writeRunning(id, local).catch((error: unknown) => {
      events.emit("error", error as Error);
      this.#ctx.requestReconcile(); // the next pass writes it
    });
    events.emit("started", { id, start: running.start, startMillis: running.startMillis });
    this.warmPools.ran(record.spec.image, registryAccessOf(record.spec));
    // Re-check: the assignment may have gone while we were starting.
    this.#ctx.requestReconcile();
  }

  /** Track a running sandbox here and report its end. */
  adopt(id: string, running: RunningSandbox, generation: string | undefined): LocalSandbox {
    const { events, sandboxes, signal } = this.#ctx;
    const local: LocalSandbox = { id, running, detached: false, generation, unreported: undefined };
    sandboxes.set(id, "local", local);
    void running.exit.then(async (exit) => {
      if (local.detached || signal.aborted) return;
      sandboxes.delete(id, "local");
      const phase = exit.kind === "exited" ? SandboxPhase.Exited : SandboxPhase.Failed;
      await this.recordFinal(
        id,
        local.generation,
        exit.kind === "exited" ? { phase, exitCode: exit.code } : { phase, reason: exit.reason },
      );
      await running.stop().catch(() => undefined);
      events.emit("finished", { id, phase });
    });
    return local;
  }

  /** Stops a sandbox that arrived (or is arriving) by migration and is not this node's. */
  async abandonIncoming(id: string): Promise<boolean> {
    const { events, sandboxes } = this.#ctx;
    const incoming = sandboxes.get(id, "incoming");
    if (!incoming) return false;
    sandboxes.delete(id, "incoming");
    const local = sandboxes.get(id, "local");
    if (local) {
      local.detached = true;
      sandboxes.delete(id, "local");
    }
    // A migration still in flight fails once its source is gone, and the driver then stops the
    // VM itself; one that completed is stopped here.
    const running = await incoming.catch(() => undefined);
    if (running)
      await running.stop().catch((error: unknown) => events.emit("error", error as Error));
    logger.info({ node: this.#name, sandbox: id }, "abandoned an incoming migration");
    events.emit("stopped", { id });
    return true;
  }

  /**
   * Keep how a run ended: in memory at once (so no pass mistakes it for an interrupted run), then
   * in `final.json` (written, fsynced and renamed into place), then in etcd (by this call or, if
   * etcd is away, by a later pass).
   */
  async recordFinal(
    id: string,
    generation: string | undefined,
    end: Pick<FinalReport, "phase" | "exitCode" | "reason">,
  ): Promise<void> {
    const { events, sandboxes, signal } = this.#ctx;
    const report: FinalReport = { generation: generation ?? null, ...end, written: false };
    sandboxes.set(id, "final", report);
    try {
      await persistFinalReport(this.sandboxDir(id), report);
    } catch (error) {
      logger.warn(
        { node: this.#name, sandbox: id, err: error },
        "could not persist a final report",
      );
    }
    if (signal.aborted) return; // close() flushes
    await this.writeFinal(id, report).catch((error: unknown) => {
      events.emit("error", error as Error);
      this.#ctx.requestReconcile(); // the pass retries it, with backoff, until etcd holds it
    });
  }

  /** Write a final report unless etcd holds it already or it no longer matters. */
  async writeFinal(id: string, report: FinalReport): Promise<void> {
    if (report.written) return;
    const generation =
      report.generation ?? (await this.#ctx.store.assignmentGeneration(this.#name, id)) ?? null;
    if (generation === null) return; // a migration arrival not assigned here (yet)
    report.generation = generation;
    const patch: Partial<SandboxStatus> =
      report.phase === SandboxPhase.Exited
        ? { phase: report.phase, exitCode: report.exitCode, reason: undefined }
        : { phase: report.phase, reason: report.reason };
    await this.#report(id, generation, (s) => (TERMINAL_PHASES.has(s.phase) ? undefined : patch));
    // Written, or refused because it no longer applies (record gone, final already, the
    // assignment replaced): either way there is nothing left to write.
    report.written = true;
  }

  /** Write the `running` status of a local sandbox, if etcd does not hold it yet. */
  async writeRunning(id: string, local: LocalSandbox): Promise<void> {
    const patch = local.unreported;
    if (!patch || local.generation === undefined) return;
    await this.#report(id, local.generation, (s) =>
      s.phase === SandboxPhase.Starting ? patch : undefined,
    );
    if (local.unreported === patch) local.unreported = undefined;
  }

  #report(
    id: string,
    generation: string,
    change: (status: SandboxStatus) => Partial<SandboxStatus> | undefined,
    attempt?: WriteAttempt,
  ): Promise<boolean> {
    const { store, sandboxes } = this.#ctx;
    return reportStatus(store, this.#name, sandboxes, id, generation, change, attempt);
  }
}
