/** Short host commands run without blocking the event loop (probes, the seccomp compiler). */
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

/** What {@link runCaptured} saw: the spawn failure (errno or timeout), or the exit status and output. */
export interface Captured {
  spawnError?: string;
  status: number | null;
  stdout: Buffer;
  stderr: Buffer;
}

/** Run a short command without blocking the event loop; never rejects. */
export async function runCaptured(
  file: string,
  args: string[],
  timeoutMs: number,
): Promise<Captured> {
  try {
    const { stdout, stderr } = await execFileAsync(file, args, {
      timeout: timeoutMs,
      maxBuffer: 1024 * 1024,
      encoding: "buffer",
    });
    return { status: 0, stdout, stderr };
  } catch (error) {
    const e = error as NodeJS.ErrnoException & {
      code?: string | number;
      killed?: boolean;
      stdout?: Buffer;
      stderr?: Buffer;
    };
    const empty = Buffer.alloc(0);
    const spawnError =
      typeof e.code === "string"
        ? e.code
        : e.killed
          ? `timed out after ${timeoutMs} ms`
          : undefined;
    return {
      ...(spawnError === undefined ? {} : { spawnError }),
      status: typeof e.code === "number" ? e.code : null,
      stdout: e.stdout ?? empty,
      stderr: e.stderr ?? empty,
    };
  }
}
