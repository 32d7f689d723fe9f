/**
 * Test pieces every component test file shares: the reason a validator gives, and the check of
 * every recorded Kubernetes object against the official OpenAPI schema.
 */
import test, { type ExecutionContext } from "ava";
import * as pulumi from "@pulumi/pulumi";
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

/**
 * Construct a component named `name` with `construct`, expecting its validators to throw an
 * `InputPropertyError` before any child (`<name>-…`) is registered; returns the error.
 */
export function throwsBeforeAnyChild(
  t: ExecutionContext,
  name: string,
  construct: () => unknown,
): pulumi.InputPropertyError | undefined {
  const before = recorded.length;
  const error = t.throws(construct, { instanceOf: pulumi.InputPropertyError });
  t.false(
    recorded.slice(before).some((r) => r.name.startsWith(`${name}-`)),
    `${name} registered a child before it failed`,
  );
  return error;
}
