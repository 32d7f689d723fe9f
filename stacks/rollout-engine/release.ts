/** Runtime releases: their schema, how one is shown, and when one must not be rolled out. */
import { z } from "zod";

/**
 * What a rollout rolls out, and what a rollback restores: the runtime version (which the processes
 * report and the gates compare) and the runtime image pinned by digest. A stack that runs pods
 * runs `image`; the version alone changes only the version it reports.
 */
export const releaseSchema = z.strictObject({
  version: z.string(),
  /** `<name>@sha256:<64 hex>`; absent: the stack pins no image (`<imageRepository>:<version>`). */
  image: z.string().optional(),
});
/** A runtime release: version and, when pinned, image. */
export type Release = z.output<typeof releaseSchema>;

/** `0.2.0`, or `0.2.0 (ghcr.io/shardworks/runtime@sha256:5a7c9e1b3d5f…)`: the digest shortened. */
export function describeRelease(release: Release): string {
  if (release.image === undefined) return release.version;
  const at = release.image.indexOf("@sha256:");
  const image = at < 0 ? release.image : `${release.image.slice(0, at + 8 + 12)}…`;
  return `${release.version} (${image})`;
}

/**
 * Why `release` must not be rolled out to a stack that has `current`, if it must not: a stack that
 * pins a runtime image runs pods, and changing only its version would relabel the old image.
 */
export function releaseProblem(
  stack: string,
  current: Release,
  release: Release,
): string | undefined {
  if (current.image === undefined || release.image !== undefined) return undefined;
  return `stack ${stack} pins the runtime image (${current.image}), so a new version alone would keep running it; pass --image <name>@sha256:<64 hex> (\`npm run images -- build runtime\` prints it)`;
}
