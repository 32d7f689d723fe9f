/**
 * A shard stack's first step: read the platform's baseline services through the StackReference
 * and check the shard's forks against them, before the shard registers any resource. (Inside
 * the DevShard, an unknown service could only fail in an `apply`, after resources were
 * registered, as a stack trace.)
 */
import * as pulumi from "@pulumi/pulumi";
import { validateForksAgainstBaseline, type BaselineService } from "../components";
import type { ShardConfig } from "./config";

/**
 * The platform's `baselineServices` output, resolved, once every fork of `config` names one of
 * them. Throws a `RunError` (printed by Pulumi as one line, no stack trace) naming
 * `shardworks:forks.<svc>` and the services the platform has.
 */
export async function platformBaseline(
  platform: pulumi.StackReference,
  config: Pick<ShardConfig, "forks" | "platformStack">,
): Promise<Record<string, BaselineService>> {
  const value: unknown = await platform.getOutputValue("baselineServices");
  const baseline =
    typeof value === "object" && value !== null ? (value as Record<string, BaselineService>) : {};
  try {
    validateForksAgainstBaseline(config.forks, baseline);
  } catch (error) {
    if (!pulumi.InputPropertyError.isInstance(error)) throw error;
    throw new pulumi.RunError(
      `shardworks:${error.propertyPath}: ${error.reason} (in platform stack ${config.platformStack}); fork one of those or add it to the platform's shardworks:baseline`,
    );
  }
  return baseline;
}
