/** What the guest agent runs for a sandbox: a shell script of its environment and command. */
import { z } from "zod";
import type { SandboxSpec } from "../../../../contract/model";
import type { QemuImage } from "./images";
import { shellQuote } from "./vm";

/** The PATH of a guest whose image sets none. */
const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const envKeySchema = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, {
  message: "must be a shell variable name (letters, digits, '_', not starting with a digit)",
});

/** The shell script the guest agent runs: the environment, the working directory, then the command. */
export function commandScript(spec: SandboxSpec, image: QemuImage, nowMillis?: number): string {
  for (const key of Object.keys(spec.env)) {
    const parsed = envKeySchema.safeParse(key);
    if (!parsed.success) {
      throw new Error(
        `spec.env.${key}: ${parsed.error.issues[0]?.message ?? "invalid"}; rename the variable`,
      );
    }
  }
  const env: Record<string, string> = {
    PATH: DEFAULT_PATH,
    HOME: "/root",
    ...image.env,
    ...spec.env,
  };
  const lines: string[] = [];
  if (nowMillis !== undefined) {
    // The guest has no RTC and a restored snapshot's clock is the snapshot's: set it to now.
    lines.push(`/.shardworks/busybox date -u -s @${Math.round(nowMillis / 1000)} >/dev/null 2>&1`);
  }
  for (const [key, value] of Object.entries(env)) {
    // An image may carry names a shell cannot export; they are skipped, as a shell would.
    if (envKeySchema.safeParse(key).success) lines.push(`export ${key}=${shellQuote(value)}`);
  }
  if (image.workingDir) lines.push(`cd ${shellQuote(image.workingDir)} || exit 126`);
  lines.push(`exec ${spec.command.map(shellQuote).join(" ")}`);
  return `${lines.join("\n")}\n`;
}
