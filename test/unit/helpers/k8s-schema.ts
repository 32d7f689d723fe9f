/* eslint-disable @typescript-eslint/no-explicit-any --
   Recorded resource inputs are untyped JSON; tests read into them freely. */
/**
 * Validation of Kubernetes objects against the official OpenAPI schema, in two passes, both
 * generated from the Kubernetes OpenAPI spec:
 * - `kubernetes-models` (its precompiled ajv validators): types, required fields, enums, formats.
 *   Its schemas allow unknown properties, so a misspelt field would pass;
 * - hence a second pass over the model metadata of `@kubernetes/client-node` (each model's
 *   `attributeTypeMap` lists exactly the fields the spec defines) that rejects any field the
 *   spec does not know, at any depth.
 */
import { createRequire } from "node:module";
import * as client from "@kubernetes/client-node";

const load = createRequire(__filename);

interface Model {
  validate(): void;
}
type ModelClass = new (data: unknown) => Model;
interface Attribute {
  baseName: string;
  type: string;
}
interface ClientModel {
  getAttributeTypeMap(): Attribute[];
}

const LEAF_TYPES = new Set(["string", "number", "boolean", "Date", "any", "object", "IntOrString"]);

/** `apps/v1` + `Deployment` → the kubernetes-models class. */
function modelClass(apiVersion: string, kind: string): ModelClass | undefined {
  const path = apiVersion.includes("/") ? apiVersion : "v1";
  try {
    const module = load(`kubernetes-models/${path}/${kind}`) as Record<string, ModelClass>;
    return module[kind];
  } catch {
    return undefined;
  }
}

/** `apps/v1` + `Deployment` → `V1Deployment` of @kubernetes/client-node. */
function clientModel(apiVersion: string, kind: string): ClientModel | undefined {
  const version = apiVersion.split("/").pop() ?? "";
  const name = `${version.charAt(0).toUpperCase()}${version.slice(1)}${kind}`;
  return (client as unknown as Record<string, ClientModel | undefined>)[name];
}

function unknownFields(value: unknown, type: string, path: string, problems: string[]): void {
  if (value === null || value === undefined || LEAF_TYPES.has(type)) return;
  const array = /^Array<(.+)>$/.exec(type);
  if (array) {
    if (Array.isArray(value))
      value.forEach((v, i) => unknownFields(v, array[1]!, `${path}[${i}]`, problems));
    return;
  }
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map) {
    if (typeof value === "object")
      for (const [k, v] of Object.entries(value))
        unknownFields(v, map[1]!, `${path}.${k}`, problems);
    return;
  }
  const model = (client as unknown as Record<string, ClientModel | undefined>)[type];
  if (model === undefined || typeof value !== "object" || Array.isArray(value)) return;
  const attributes = new Map(model.getAttributeTypeMap().map((a) => [a.baseName, a.type]));
  for (const [key, child] of Object.entries(value as Record<string, unknown>)) {
    const childType = attributes.get(key);
    if (childType === undefined) problems.push(`${path}.${key}: unknown field (not in ${type})`);
    else unknownFields(child, childType, `${path}.${key}`, problems);
  }
}

/**
 * Problems of a Kubernetes object against the OpenAPI schema of its apiVersion/kind; empty when
 * it is valid. An apiVersion/kind the schema does not have is itself a problem.
 */
export function kubernetesSchemaProblems(object: Record<string, unknown>): string[] {
  const apiVersion = String(object["apiVersion"]);
  const kind = String(object["kind"]);
  const Model = modelClass(apiVersion, kind);
  const clientType = clientModel(apiVersion, kind);
  if (Model === undefined || clientType === undefined)
    return [`${apiVersion}/${kind}: no such kind in the schema`];
  const problems: string[] = [];
  try {
    new Model(object).validate();
  } catch (error) {
    problems.push(String((error as Error).message));
  }
  const version = apiVersion.split("/").pop() ?? "";
  unknownFields(
    object,
    `${version.charAt(0).toUpperCase()}${version.slice(1)}${kind}`,
    kind,
    problems,
  );
  return problems;
}

/** The pod spec of a workload's inputs (Deployment, StatefulSet, DaemonSet), if it has one. */
export function podSpecOf(inputs: Record<string, any>): Record<string, any> | undefined {
  return inputs["spec"]?.["template"]?.["spec"] as Record<string, any> | undefined;
}

/** Kubernetes resources among recorded ones (type token `kubernetes:<group/version>:<Kind>`). */
export function isKubernetesObject(type: string): boolean {
  return type.startsWith("kubernetes:") && !type.startsWith("kubernetes:helm");
}
