/** Helpers for tests that talk to a real Kubernetes API server through `@kubernetes/client-node`. */
import * as k8s from "@kubernetes/client-node";

/** The HTTP status a client-node call failed with (or 200 when it succeeded). */
export async function statusOf(call: () => Promise<unknown>): Promise<number> {
  try {
    await call();
    return 200;
  } catch (error) {
    if (error instanceof k8s.ApiException) return error.code;
    throw error;
  }
}
