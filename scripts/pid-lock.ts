/**
 * One exclusive pid-file lock for the testbed's scripts (a tools build, a cluster's up/down, an
 * image build): the file is created exclusively and holds the holder's pid; a lock whose process
 * is gone is stale and taken over. (No well-kept npm library does the stale-pid takeover the way
 * these callers need, without a daemon: proper-lockfile goes by mtime.)
 */
import { existsSync } from "node:fs";
import { readFile, rm, writeFile } from "node:fs/promises";

export interface PidLockOptions {
  /** How long to wait between tries while another process holds the lock. */
  readonly pollMs: number;
  /** Told who holds the lock, on the first wait and then every `tellEvery` tries. */
  readonly onWait: (holder: number) => void;
  readonly tellEvery?: number;
}

/** Take the lock at `path`, waiting while a live process holds it; resolves its release. */
export async function acquirePidLock(
  path: string,
  options: PidLockOptions,
): Promise<() => Promise<void>> {
  for (let waited = 0; ; waited++) {
    try {
      await writeFile(path, String(process.pid), { flag: "wx" });
      return () => rm(path, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const holder = Number((await readFile(path, "utf8").catch(() => "0")).trim() || "0");
      if (!(holder > 0 && existsSync(`/proc/${holder}`))) {
        await rm(path, { force: true });
        continue;
      }
      if (waited % (options.tellEvery ?? Number.MAX_SAFE_INTEGER) === 0) options.onWait(holder);
      await new Promise((resolve) => setTimeout(resolve, options.pollMs));
    }
  }
}

/** Run `fn` holding the lock at `path`. */
export async function withPidLock<T>(
  path: string,
  options: PidLockOptions,
  fn: () => Promise<T>,
): Promise<T> {
  const release = await acquirePidLock(path, options);
  try {
    return await fn();
  } finally {
    await release();
  }
}
