/** The seccomp filter every process sandbox loads. */
import { readFile } from "node:fs/promises";
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

/**
 * Where the runtime image holds the filter, compiled when the image was built (`npm run images --
 * build runtime`): the image has no Python, and the filter only depends on the architecture.
 */
export const PREBUILT_SECCOMP_FILTER = "/usr/lib/shardworks/seccomp.bpf";

/** The filter: the prebuilt one when `prebuilt` exists (the runtime image), else compiled. */
export async function seccompFilter(
  python?: string,
  prebuilt = PREBUILT_SECCOMP_FILTER,
): Promise<Buffer> {
  let program: Buffer;
  try {
    program = await readFile(prebuilt);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    return compileSeccompFilter(python);
  }
  // A BPF program is a list of 8-byte instructions: anything else would fail every sandbox.
  if (program.length === 0 || program.length % 8 !== 0) {
    throw new Error(
      `the seccomp filter ${prebuilt} is not a BPF program (${program.length} bytes, not a multiple of 8); rebuild the runtime image (npm run images -- build runtime)`,
    );
  }
  return program;
}
