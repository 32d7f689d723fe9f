/** The files of a cluster's state: `state.json` (pids, ports) and its tokens. */
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { ClusterName, type Log, UserName } from "./common";
import { withPidLock } from "../pid-lock";

/** `state.json`: what runs, on which ports. */
export const State = z.object({
  name: ClusterName,
  server: z.string().url(),
  etcdEndpoint: z.string().url(),
  apiPort: z.number().int(),
  node: z.boolean(),
  pids: z.record(z.string(), z.number().int()),
  startedAt: z.string(),
});
export type State = z.infer<typeof State>;

export const Tokens = z.object({ admin: z.string(), users: z.record(z.string(), z.string()) });

/** The cluster's `state.json`, when there is a valid one. */
export async function readState(dir: string): Promise<State | undefined> {
  const file = join(dir, "state.json");
  if (!existsSync(file)) return undefined;
  const parsed = State.safeParse(JSON.parse(await readFile(file, "utf8")));
  return parsed.success ? parsed.data : undefined;
}

/** The admin token and one per test user (kept across restarts), and `tokens.csv`. */
export async function ensureTokens(
  dir: string,
  users: readonly string[],
): Promise<z.infer<typeof Tokens>> {
  const file = join(dir, "tokens.json");
  const token = (): string => randomBytes(24).toString("hex");
  const tokens = existsSync(file)
    ? Tokens.parse(JSON.parse(await readFile(file, "utf8")))
    : { admin: token(), users: {} };
  for (const user of users) tokens.users[UserName.parse(user)] ??= token();
  await writeFile(file, JSON.stringify(tokens, null, 2), { mode: 0o600 });
  // kube-apiserver --token-auth-file: token,user,uid,"group1,group2"
  const csv = [
    `${tokens.admin},shardworks-admin,shardworks-admin,"system:masters"`,
    ...Object.entries(tokens.users).map(([user, t]) => `${t},${user},${user}`),
  ].join("\n");
  await writeFile(join(dir, "tokens.csv"), `${csv}\n`, { mode: 0o600 });
  return tokens;
}

/** Write `state.json`. */
export async function saveState(dir: string, state: State): Promise<void> {
  await writeFile(join(dir, "state.json"), JSON.stringify(state, null, 2));
}

/**
 * One `up`/`down` of a cluster at a time (two test files, or a shell and a test): an exclusive
 * lock file holding the holder's pid; one whose pid is gone is stale and taken over.
 */
export async function withClusterLock<T>(dir: string, log: Log, fn: () => Promise<T>): Promise<T> {
  return withPidLock(
    join(dir, ".lock"),
    {
      pollMs: 250,
      tellEvery: 20,
      onWait: (holder) => log(`waiting for another up/down of this cluster (pid ${holder})…`),
    },
    fn,
  );
}
