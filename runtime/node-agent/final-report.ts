/**
 * How a run on this node ended, as the agent observed it, and its copy in the sandbox's directory
 * (`final.json`), through which an agent restarted on the same data dir still reports it.
 */
import { mkdir, open, readdir, readFile, rename } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { logger } from "../lib/logger";
import { SandboxPhase } from "../../contract/model";

/**
 * How a run here ended, as this agent observed it: kept (in memory and in the sandbox's
 * directory) until etcd holds it or it no longer matters (the assignment is gone).
 */
export const finalReportSchema = z.strictObject({
  generation: z.string().nullable(),
  phase: z.enum([SandboxPhase.Exited, SandboxPhase.Failed]),
  exitCode: z.number().int().optional(),
  reason: z.string().optional(),
});
/** A final report, and whether etcd holds it. */
export type FinalReport = z.infer<typeof finalReportSchema> & { written: boolean };

/** `final.json` in a sandbox's directory: how its run here ended, until etcd holds it. */
function finalFile(sandboxDir: string): string {
  return join(sandboxDir, "final.json");
}

/** Write a report to `final.json` in `sandboxDir` (written, fsynced and renamed into place). */
export async function persistFinalReport(sandboxDir: string, report: FinalReport): Promise<void> {
  await mkdir(sandboxDir, { recursive: true });
  const tmp = `${finalFile(sandboxDir)}.tmp`;
  const file = await open(tmp, "w");
  try {
    const { written: _written, ...persisted } = report;
    await file.writeFile(JSON.stringify(persisted));
    await file.sync();
  } finally {
    await file.close();
  }
  await rename(tmp, finalFile(sandboxDir));
}

/**
 * The final reports an earlier agent wrote under `sandboxesDir` (`<id>/final.json`), which it may
 * not have reported: each not `written`. A corrupt file is logged and skipped.
 */
export async function readFinalReports(
  sandboxesDir: string,
  node: string,
): Promise<[string, FinalReport][]> {
  const reports: [string, FinalReport][] = [];
  const dirs = await readdir(sandboxesDir).catch(() => [] as string[]);
  for (const id of dirs) {
    const text = await readFile(finalFile(join(sandboxesDir, id)), "utf8").catch(() => undefined);
    if (text === undefined) continue;
    try {
      reports.push([id, { ...finalReportSchema.parse(JSON.parse(text)), written: false }]);
    } catch (error) {
      logger.warn({ node, sandbox: id, err: error }, "ignoring a corrupt final.json");
    }
  }
  return reports;
}
