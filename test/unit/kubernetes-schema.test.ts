/* eslint-disable @typescript-eslint/no-explicit-any --
   Recorded resource inputs are untyped JSON; tests read into them freely. */
import test from "ava";
import { kubernetesSchemaProblems } from "./helpers/k8s-schema";

const deployment = () => ({
  apiVersion: "apps/v1",
  kind: "Deployment",
  metadata: { name: "api", namespace: "shard-alice", labels: { app: "api" } },
  spec: {
    replicas: 1,
    selector: { matchLabels: { app: "api" } },
    template: {
      metadata: { labels: { app: "api" } },
      spec: {
        containers: [
          {
            name: "api",
            image: "api:1",
            ports: [{ containerPort: 8080 }],
            resources: { limits: { cpu: "500m", memory: "512Mi" } },
          },
        ],
      },
    },
  },
});

test("a well-formed Deployment passes", (t) => {
  t.deepEqual(kubernetesSchemaProblems(deployment()), []);
});

test("an unknown field is rejected, at any depth", (t) => {
  const top = { ...deployment(), extra: true };
  t.deepEqual(kubernetesSchemaProblems(top), [
    "Deployment.extra: unknown field (not in V1Deployment)",
  ]);

  const deep = deployment();
  (deep.spec.template.spec.containers[0] as Record<string, unknown>)["imagePullPolicyy"] = "Always";
  t.deepEqual(kubernetesSchemaProblems(deep), [
    "Deployment.spec.template.spec.containers[0].imagePullPolicyy: unknown field (not in V1Container)",
  ]);
});

test("a wrongly typed field is rejected", (t) => {
  const wrong = deployment();
  (wrong.spec.template.spec.containers[0]!.ports[0] as Record<string, unknown>)["containerPort"] =
    "8080";
  t.deepEqual(kubernetesSchemaProblems(wrong), [
    "data/spec/template/spec/containers/0/ports/0/containerPort must be integer",
  ]);
  const replicas = deployment() as Record<string, any>;
  replicas.spec.replicas = "one";
  t.deepEqual(kubernetesSchemaProblems(replicas), ["data/spec/replicas must be integer"]);
});

test("a missing required field and an unknown kind are rejected", (t) => {
  const noImage = deployment() as Record<string, any>;
  delete noImage.spec.template.spec.containers[0].name;
  t.deepEqual(kubernetesSchemaProblems(noImage), [
    "data/spec/template/spec/containers/0 must have required property name",
  ]);
  t.deepEqual(kubernetesSchemaProblems({ apiVersion: "apps/v1", kind: "Deploymnet" }), [
    "apps/v1/Deploymnet: no such kind in the schema",
  ]);
});

test("maps of quantities and label maps are checked by value type, not as fields", (t) => {
  const labelled = deployment() as Record<string, any>;
  labelled.metadata.labels["anything.example/goes"] = "yes";
  t.deepEqual(kubernetesSchemaProblems(labelled), []);
  labelled.metadata.labels["n"] = 3;
  t.deepEqual(kubernetesSchemaProblems(labelled), ["data/metadata/labels/n must be string"]);
});
