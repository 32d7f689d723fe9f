/**
 * Test pieces every component test file shares: the reason a validator gives, and the check of
 * every recorded Kubernetes object against the official OpenAPI schema.
 */
import test from "ava";
import type * as pulumi from "@pulumi/pulumi";
import { isKubernetesObject, kubernetesSchemaProblems } from "./k8s-schema";
import { recorded } from "./pulumi";

/** `"<propertyPath>: <reason>"` of the `InputPropertyError` that `fn` throws, or `"no error"`. */
export function reasonOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    return `${(error as pulumi.InputPropertyError).propertyPath}: ${(error as Error).message}`;
  }
  return "no error";
}

/**
 * Register the test that every Kubernetes object recorded in this file is valid against the
 * OpenAPI schema (unknown or wrongly typed fields included). `count`: how many objects the file
 * must have made (exactly, or at least), so the test cannot pass on nothing.
 */
export function testObjectsMatchOpenApi(count: { exactly: number } | { atLeast: number }): void {
  test("every Kubernetes object is valid against the OpenAPI schema", (t) => {
    const objects = recorded.filter((r) => isKubernetesObject(r.type));
    if ("exactly" in count) t.is(objects.length, count.exactly);
    else t.true(objects.length >= count.atLeast, `${objects.length} objects`);
    for (const r of objects) t.deepEqual(kubernetesSchemaProblems(r.inputs), [], r.name);
  });
}
