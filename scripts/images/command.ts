/** Runs the builder's tools (umoci, skopeo). */
import { spawn } from "node:child_process";

/** Runs a command, resolving with stdout; rejects with the command and its last output lines. */
export function run(command: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (d: Buffer) => out.push(d));
    child.stderr.on("data", (d: Buffer) => err.push(d));
    child.once("error", (e) =>
      reject(
        new Error(
          `${command}: ${e.message} (is it installed? see scripts/install-debian-packages.sh)`,
        ),
      ),
    );
    child.once("close", (code) => {
      const stdout = Buffer.concat(out).toString();
      if (code === 0) return resolve(stdout);
      const tail = `${stdout}${Buffer.concat(err).toString()}`.trim().split("\n").slice(-8);
      reject(
        new Error(
          `${command} ${args.join(" ")} failed (exit ${String(code)}):\n${tail.join("\n")}`,
        ),
      );
    });
  });
}
