/**
 * What every stack config shares: its namespace and kinds, the limits it holds values to, and
 * the field schemas (images, quantities, durations, label selectors) the sections are built of.
 */
import { z } from "zod";
import { MAX_SHARD_TTL_SECONDS } from "../../contract/model";
import { parseDuration } from "../duration";
import { MAX_JIT_CEILING_MS } from "../../components/access-control";
import { quantityValue, READINESS_PATH } from "../../components/dev-shard";

/** The Pulumi config namespace of every key. */
export const CONFIG_NAMESPACE = "shardworks";

/** What a stack builds. */
export const StackKind = { Platform: "platform", Shard: "shard" } as const;
/** One of {@link StackKind}. */
export type StackKind = (typeof StackKind)[keyof typeof StackKind];

/** Where a platform stack runs. */
export const PlatformTarget = { Aws: "aws", Local: "local" } as const;
/** One of {@link PlatformTarget}. */
export type PlatformTarget = (typeof PlatformTarget)[keyof typeof PlatformTarget];

/** Longest TTL a shard may ask for: 7 days. */
export const MAX_SHARD_TTL_MS = MAX_SHARD_TTL_SECONDS * 1000;
/** Longest JIT grant maximum a platform may configure: 24 hours (the components' ceiling). */
export { MAX_JIT_CEILING_MS };

/** An EC2 instance type, e.g. `m6i.large`. */
export const EC2_INSTANCE_TYPE = /^[a-z][a-z0-9-]*\.[a-z0-9-]+$/;

/** An AWS region, e.g. `us-east-1`. */
export const AWS_REGION = /^[a-z]{2}(-gov)?-[a-z]+-\d$/;
/** The ARN of an IAM role. */
export const IAM_ROLE_ARN = /^arn:aws[a-z-]*:iam::\d{12}:role\/[\w+=,.@/-]+$/;
const QUANTITY = /^\d+(\.\d+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$/;
/** A semantic version, `v` optional, e.g. `0.2.0`. */
export const VERSION = /^v?\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/;
const IMAGE = /^[a-z0-9]([a-z0-9._\-/:@]*[a-z0-9])?$/i;
/** A Pulumi stack name: `[org/][project/]stack`. */
export const STACK_NAME = /^([A-Za-z0-9_.-]+\/){0,2}[A-Za-z0-9_.-]+$/;
/** An environment variable's name. */
export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** A TCP port, 1-65535. */
export const port = z.number().int().min(1).max(65535);
/** `name@sha256:<64 hex>` (a tag before the digest is allowed and ignored by the kubelet). */
export const PINNED_IMAGE = /^[a-z0-9]([a-z0-9._\-/:]*[a-z0-9])?@sha256:[0-9a-f]{64}$/;
/** An image pinned by digest; the message says how the images script makes one. */
export function pinnedImage(what: "runtime" | "gateway") {
  return z.string().regex(PINNED_IMAGE, {
    message: `must be pinned by digest, "<name>@sha256:<64 hex>"; \`npm run images -- build ${what}\` builds it, pushes it (--registry <host[/prefix]> for yours) and prints the reference`,
  });
}
const LABEL_KEY =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;
/** A label selector (`matchLabels`): at least one label, each key and value as Kubernetes allows. */
export const labelSelector = z
  .record(
    z.string().regex(LABEL_KEY, {
      message: 'must be a label key, e.g. "app" or "app.kubernetes.io/name"',
    }),
    z.string().regex(LABEL_VALUE, {
      message: "must be a label value: at most 63 letters, digits, '-', '_' or '.'",
    }),
  )
  .refine((labels) => Object.keys(labels).length > 0, {
    message: "is empty; give the labels of the service's pods, e.g. {app: checkout}",
  });
/** An image reference, e.g. `nginx:1.27`. */
export const image = z
  .string()
  .regex(IMAGE, { message: 'must be an image reference, e.g. "nginx:1.27"' });
const quantity = z
  .string()
  .regex(QUANTITY, { message: 'must be a Kubernetes quantity, e.g. "500m", "4" or "8Gi"' });
/** A Kubernetes quantity above zero. */
export const positiveQuantity = quantity.refine((q) => !(quantityValue(q) <= 0), {
  message: 'must be more than 0, e.g. "500m", "4" or "8Gi"',
});

/** A duration as people write it (`"8h"`, `"1h30m"`): above zero and at most `maxMs` (`maxText`). */
export function duration(maxMs: number, maxText: string) {
  return z.string().superRefine((text, ctx) => {
    const ms = parseDuration(text);
    if (ms === undefined && /^(?:0+[dhms])+$/.test(text)) {
      ctx.addIssue({
        code: "custom",
        message: `${JSON.stringify(text)} must be positive, e.g. "8h"`,
      });
    } else if (ms === undefined) {
      ctx.addIssue({
        code: "custom",
        message: `${JSON.stringify(text)} is not a duration; use e.g. "30m", "8h", "1h30m" or "7d"`,
      });
    } else if (ms > maxMs) {
      ctx.addIssue({
        code: "custom",
        message: `${JSON.stringify(text)} is longer than the maximum of ${maxText}`,
      });
    }
  });
}

/** An HTTP readiness path, e.g. "/healthz". */
export const readinessPath = z.string().regex(READINESS_PATH, {
  message: 'must be an absolute URL path without spaces, e.g. "/healthz"',
});
