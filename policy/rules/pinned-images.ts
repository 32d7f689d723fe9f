/** Platform images are pinned by digest, so every cluster runs the bytes that were tested. */
import type { ResourceValidationPolicy } from "@pulumi/policy";
import { SHARD_LABEL, SYSTEM_NAMESPACE } from "../../contract";
import { type PodTemplate, containersOf, namespaceOf, onEveryPodTemplate } from "./workloads";

const DIGEST = /@sha256:[0-9a-f]{64}$/;

/** A platform workload: in shardworks-system, or part of shardworks and not a shard's fork. */
export function isPlatformWorkload(template: PodTemplate): boolean {
  const labels = template.metadata.labels ?? {};
  return (
    namespaceOf(template.metadata) === SYSTEM_NAMESPACE ||
    (labels["app.kubernetes.io/part-of"] === "shardworks" && labels[SHARD_LABEL] === undefined)
  );
}

/** Report each container image of a platform workload that is not pinned by digest. */
export function checkPinnedImages(template: PodTemplate, report: (message: string) => void): void {
  if (!isPlatformWorkload(template)) return;
  for (const { path, container } of containersOf(template)) {
    const image = container.image ?? "";
    if (!DIGEST.test(image))
      report(
        `${path} ("${container.name}"): image ${JSON.stringify(image)} is not pinned by digest; use <image>@sha256:<digest>`,
      );
  }
}

/** The validate function: applies to every kind of workload. */
export const validatePinnedImages = onEveryPodTemplate(checkPinnedImages);

/** Policy (advisory): platform images pinned by digest. */
export const platformImagesPinned: ResourceValidationPolicy = {
  name: "platform-images-pinned",
  description:
    "A tag can be moved to other bytes at any time, so platform images pinned by digest are the only way every cluster runs exactly the image that passed the canary.",
  enforcementLevel: "advisory",
  validateResource: validatePinnedImages,
};
