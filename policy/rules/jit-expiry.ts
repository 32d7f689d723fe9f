/**
 * A JIT binding expires, and soon: the access reaper deletes it once its expiry passes, so the
 * annotation is what makes the access temporary.
 */
import * as k8s from "@pulumi/kubernetes";
import type {
  ReportViolation,
  ResourceValidationArgs,
  ResourceValidationPolicy,
} from "@pulumi/policy";
import * as pulumi from "@pulumi/pulumi";
import { DEFAULT_MAX_JIT_MS, validateJitExpiry } from "../../components/access-control";
import { EXPIRES_AT_ANNOTATION, JIT_LABEL } from "../../contract";
import type { ObjectMeta } from "./workloads";

const ANNOTATION_PATH = `metadata.annotations["${EXPIRES_AT_ANNOTATION}"]`;

/** Report what is wrong with a binding's expiry; a binding that is not a JIT grant is skipped. */
export function checkJitBinding(
  metadata: ObjectMeta | undefined,
  now: Date,
  report: (message: string) => void,
): void {
  const expiresAt = metadata?.annotations?.[EXPIRES_AT_ANNOTATION];
  const isJit = metadata?.labels?.[JIT_LABEL] === "true" || expiresAt !== undefined;
  if (!isJit) return;
  if (expiresAt === undefined) {
    report(
      `${ANNOTATION_PATH} is missing on a JIT binding (label ${JIT_LABEL}); without it the grant never expires`,
    );
    return;
  }
  try {
    validateJitExpiry(expiresAt, now, DEFAULT_MAX_JIT_MS);
  } catch (error) {
    if (!pulumi.InputPropertyError.isInstance(error)) throw error;
    report(`${ANNOTATION_PATH}: ${error.reason}`);
  }
}

/** The policy with its clock (tests pass a fixed one). */
export function createJitExpiryPolicy(now: () => Date): ResourceValidationPolicy {
  const validate = (args: ResourceValidationArgs, reportViolation: ReportViolation): void => {
    const binding =
      args.asType(k8s.rbac.v1.RoleBinding) ?? args.asType(k8s.rbac.v1.ClusterRoleBinding);
    if (binding === undefined) return;
    checkJitBinding(binding.metadata, now(), (message) => reportViolation(message));
  };
  return {
    name: "jit-binding-expiry",
    description: `A just-in-time grant must carry a valid ${EXPIRES_AT_ANNOTATION} at most ${DEFAULT_MAX_JIT_MS / 3_600_000}h ahead, because that expiry is the only thing that takes the access away again.`,
    enforcementLevel: "mandatory",
    validateResource: validate,
  };
}

/** Policy: JIT bindings expire within 8 hours. */
export const jitBindingExpiry = createJitExpiryPolicy(() => new Date());
