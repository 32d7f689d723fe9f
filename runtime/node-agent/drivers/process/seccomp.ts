/** The seccomp filter every process sandbox loads. */
import { join } from "node:path";
import { runCaptured } from "./exec";

/**
 * The seccomp filter as the BPF program bwrap loads, compiled by libseccomp (see
 * `seccomp-filter.py`: libseccomp has no maintained Node binding, its own Python one is in Debian).
 */
export async function compileSeccompFilter(python = "/usr/bin/python3"): Promise<Buffer> {
  const script = join(__dirname, "..", "seccomp-filter.py");
  const result = await runCaptured(python, [script], 20_000);
  if (result.spawnError !== undefined || result.status !== 0 || result.stdout.length === 0) {
    const why = result.spawnError ?? result.stderr.toString().trim().split("\n").pop() ?? "";
    throw new Error(
      `cannot compile the seccomp filter with ${python} (${why || `exit ${result.status}`}); install Debian's python3-seccomp, or set seccomp: false to run sandboxes without it`,
    );
  }
  return result.stdout;
}
