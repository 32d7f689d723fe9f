import test from "ava";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  KUBERNETES_PROVIDER_VERSION,
  PULUMI_VERSION,
  kubernetesStagingReplaces,
  pulumiReplaces,
  requiredVersionReplaces,
} from "../../scripts/tools";

// Excerpts of the real go.mod files at the pinned versions (k8s.io/kubernetes v1.36.3,
// github.com/pulumi/pulumi/pkg/v3 v3.248.0).
const kubernetesGoMod = `module k8s.io/kubernetes

go 1.26.0

require (
	k8s.io/api v0.0.0
	github.com/kylelemons/godebug v1.1.0 // indirect
)

replace (
	k8s.io/api => ./staging/src/k8s.io/api
	k8s.io/apimachinery => ./staging/src/k8s.io/apimachinery
	k8s.io/cri-streaming => ./staging/src/k8s.io/cri-streaming
)
`;

const pulumiGoMod = `module github.com/pulumi/pulumi/pkg/v3

go 1.25.0

replace github.com/pulumi/pulumi/sdk/v3 => ../sdk

replace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e

require (
	cloud.google.com/go/logging v1.13.2
)
`;

test("k8s.io/kubernetes staging replaces map to the published staging modules of the same release", (t) => {
  t.deepEqual(kubernetesStagingReplaces(kubernetesGoMod, "v1.36.3"), [
    "k8s.io/api => k8s.io/api v0.36.3",
    "k8s.io/apimachinery => k8s.io/apimachinery v0.36.3",
    "k8s.io/cri-streaming => k8s.io/cri-streaming v0.36.3",
  ]);
});

test("Pulumi's relative replaces become the published module at the same version; module replaces are kept", (t) => {
  t.deepEqual(pulumiReplaces(pulumiGoMod, "v3.248.0"), [
    "github.com/pulumi/pulumi/sdk/v3 => github.com/pulumi/pulumi/sdk/v3 v3.248.0",
    "github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e",
  ]);
});

test("the Pulumi CLI and Kubernetes provider pins follow package.json", (t) => {
  const { dependencies } = JSON.parse(
    readFileSync(join(__dirname, "../../package.json"), "utf8"),
  ) as {
    dependencies: Record<string, string>;
  };
  t.is(PULUMI_VERSION, `v${dependencies["@pulumi/pulumi"]}`);
  t.is(KUBERNETES_PROVIDER_VERSION, `v${dependencies["@pulumi/kubernetes"]}`);
});

// Excerpt of github.com/pulumi/pulumi-kubernetes/provider/v4's go.mod at the served pseudo-version
// v4.0.0-20260115033456-f47bc2d6f199.
const providerGoMod = `module github.com/pulumi/pulumi-kubernetes/provider/v4

go 1.24.7

replace github.com/pulumi/pulumi-kubernetes/sdk/v4 => ../sdk

require (
	github.com/pulumi/pulumi-kubernetes/sdk/v4 v4.24.0
	github.com/pulumi/pulumi/sdk/v3 v3.215.0
)
`;

test("the provider's ../sdk replace becomes the published sdk/v4 at the version its go.mod requires", (t) => {
  t.deepEqual(requiredVersionReplaces(providerGoMod), [
    "github.com/pulumi/pulumi-kubernetes/sdk/v4 => github.com/pulumi/pulumi-kubernetes/sdk/v4 v4.24.0",
  ]);
});

test("a relative replace of a module the go.mod does not require is an error naming it", (t) => {
  const broken = providerGoMod.replace(/^\tgithub.com\/pulumi\/pulumi-kubernetes\/sdk.*$/m, "");
  t.throws(() => requiredVersionReplaces(broken), {
    message:
      /github.com\/pulumi\/pulumi-kubernetes\/sdk\/v4 is replaced by \.\.\/sdk but not required/,
  });
});
