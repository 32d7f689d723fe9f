/**
 * What the installer builds: the pinned versions and one recipe per Go tool (its module, its
 * main packages, and the wrapper module that maps the module's `replace` directives to
 * published versions).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { repoRoot } from "./cache";

/** Pinned versions. `@pulumi/pulumi` and `@pulumi/kubernetes` come from package.json. */
const packageJson = z
  .object({
    dependencies: z.object({
      "@pulumi/pulumi": z.string().regex(/^\d+\.\d+\.\d+$/, "pin @pulumi/pulumi exactly"),
      "@pulumi/kubernetes": z.string().regex(/^\d+\.\d+\.\d+$/, "pin @pulumi/kubernetes exactly"),
    }),
  })
  .parse(JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8")));

export const PULUMI_VERSION = `v${packageJson.dependencies["@pulumi/pulumi"]}`;
export const KUBERNETES_PROVIDER_VERSION = `v${packageJson.dependencies["@pulumi/kubernetes"]}`;
/** The newest Kubernetes release the Go toolchain here (go 1.26) builds. */
export const KUBERNETES_VERSION = "v1.36.3";

/** A Go build: one wrapper module, one or more main packages. */
export interface GoTool {
  readonly name: string;
  readonly binaries: readonly string[];
  /** The module the binaries come from, and its pinned version. */
  readonly module: string;
  readonly version: string;
  readonly packages: readonly string[];
  /** Extra requires/replaces for the wrapper module (computed from the real go.mod). */
  readonly wrapper: (goModOfModule: string) => { requires: string[]; replaces: string[] };
  readonly ldflags: string;
  /**
   * Files written into the wrapper module beside its go.mod (e.g. our own `main.go`), given the
   * downloaded module's directory; packages may then name `./<dir>` of the wrapper.
   */
  readonly files?: (moduleDir: string) => Record<string, string>;
}

/** `replace X => ./staging/src/X` (k8s.io/kubernetes) becomes `replace X => X v0.<minor>.<patch>`. */
export function kubernetesStagingReplaces(goMod: string, version: string): string[] {
  const staging = version.replace(/^v1\./, "v0.");
  const replaces: string[] = [];
  for (const match of goMod.matchAll(
    /^\s*(?:replace\s+)?(\S+)\s+=>\s+\.\/staging\/src\/(\S+)\s*$/gm,
  )) {
    replaces.push(`${match[1]} => ${match[2]} ${staging}`);
  }
  return replaces;
}

/**
 * Repeats a go.mod's replaces for a wrapper: relative paths (`../sdk`) become the published module at
 * the same version (`sdk/v3 => sdk/v3 v3.248.0`); module-to-module replaces are kept as they are.
 */
export function pulumiReplaces(goMod: string, version: string): string[] {
  const replaces: string[] = [];
  for (const match of goMod.matchAll(
    /^\s*(?:replace\s+)?(\S+)(?:\s+v\S+)?\s+=>\s+(\S+)(?:\s+(v\S+))?\s*$/gm,
  )) {
    const [, from, to, toVersion] = match;
    if (from === undefined || to === undefined) continue;
    if (to.startsWith(".")) replaces.push(`${from} => ${from} ${version}`);
    else if (toVersion !== undefined) replaces.push(`${from} => ${to} ${toVersion}`);
  }
  return replaces;
}

/** The Kubernetes components the testbed runs, all built from one k8s.io/kubernetes wrapper. */
export const KUBERNETES_BINARIES = [
  "kube-apiserver",
  "kube-controller-manager",
  "kube-scheduler",
  "kubelet",
  "kube-proxy",
] as const;

/** CoreDNS, with only the plugins cluster DNS uses (CoreDNS's own compile-time plugin selection). */
export const COREDNS_VERSION = "v1.14.2";
const COREDNS_PLUGINS = [
  "reload",
  "ready",
  "health",
  "errors",
  "log",
  "loadbalance",
  "cache",
  "kubernetes",
  "loop",
  "forward",
] as const;

/**
 * The Node.js language host: the newest `github.com/pulumi/pulumi/sdk/v3` served here that still
 * contains `nodejs/cmd/pulumi-language-nodejs` (the proxy serves v3.90.0 and v3.94.0 next, without
 * it; it moved to `sdk/nodejs/cmd/pulumi-language-nodejs/v3`, which the proxy refuses: 403).
 */
export const LANGUAGE_HOST_VERSION = "v3.68.0";

/**
 * The Kubernetes provider: the only version of `provider/v4` the proxy serves is this
 * pseudo-version (commit f47bc2d6f199 of 2026-01-15, between the v4.24 and v4.25 releases). It is
 * labelled with the version of `@pulumi/kubernetes` in package.json, which asks the engine for a
 * plugin of exactly that version.
 */
export const KUBERNETES_PROVIDER_MODULE_VERSION = "v4.0.0-20260115033456-f47bc2d6f199";
const PROVIDER_MODULE = "github.com/pulumi/pulumi-kubernetes/provider/v4";

/** `replace X => ../sdk` of the provider: the published X at the version its go.mod requires. */
export function requiredVersionReplaces(goMod: string): string[] {
  const replaces: string[] = [];
  for (const match of goMod.matchAll(/^\s*(?:replace\s+)?(\S+)\s+=>\s+(\.\S*)\s*$/gm)) {
    const from = match[1] ?? "";
    const required = new RegExp(`^\\s*${from.replace(/[.]/g, "\\.")}\\s+(v\\S+)`, "m").exec(goMod);
    if (required?.[1] === undefined) {
      throw new Error(`${from} is replaced by ${match[2] ?? ""} but not required in go.mod`);
    }
    replaces.push(`${from} => ${from} ${required[1]}`);
  }
  return replaces;
}

export const goTools: readonly GoTool[] = [
  {
    name: "kubernetes",
    binaries: KUBERNETES_BINARIES,
    module: "k8s.io/kubernetes",
    version: KUBERNETES_VERSION,
    packages: KUBERNETES_BINARIES.map((b) => `k8s.io/kubernetes/cmd/${b}`),
    wrapper: (goMod) => ({
      requires: [],
      replaces: kubernetesStagingReplaces(goMod, KUBERNETES_VERSION),
    }),
    ldflags: [
      `-X k8s.io/component-base/version.gitVersion=${KUBERNETES_VERSION}`,
      `-X k8s.io/component-base/version.gitMajor=1`,
      `-X k8s.io/component-base/version.gitMinor=${KUBERNETES_VERSION.split(".")[1] ?? ""}`,
      `-X k8s.io/client-go/pkg/version.gitVersion=${KUBERNETES_VERSION}`,
    ].join(" "),
  },
  {
    name: "coredns",
    binaries: ["coredns"],
    module: "github.com/coredns/coredns",
    version: COREDNS_VERSION,
    packages: ["./cmd/coredns"],
    wrapper: () => ({ requires: [], replaces: [] }),
    ldflags: "",
    files: () => ({
      "cmd/coredns/main.go": [
        "// Generated by scripts/tools.ts: CoreDNS with the plugins of cluster DNS only.",
        "package main",
        "",
        "import (",
        '\t"github.com/coredns/coredns/core/dnsserver"',
        '\t"github.com/coredns/coredns/coremain"',
        ...COREDNS_PLUGINS.map((p) => `\t_ "github.com/coredns/coredns/plugin/${p}"`),
        ")",
        "",
        "func init() {",
        `\tdnsserver.Directives = []string{${COREDNS_PLUGINS.map((p) => `"${p}"`).join(", ")}}`,
        "}",
        "",
        "func main() { coremain.Run() }",
        "",
      ].join("\n"),
    }),
  },
  {
    // NetworkPolicy enforcement for the testbed's nodes (the bridge CNI enforces none): kube-router
    // with only its firewall on. v2.1.0 is the one version the Go module proxy serves.
    name: "kube-router",
    binaries: ["kube-router"],
    module: "github.com/cloudnativelabs/kube-router/v2",
    version: "v2.1.0",
    packages: ["github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"],
    wrapper: () => ({ requires: [], replaces: [] }),
    ldflags: "",
  },
  {
    name: "pulumi",
    binaries: ["pulumi"],
    module: "github.com/pulumi/pulumi/pkg/v3",
    version: PULUMI_VERSION,
    packages: ["github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"],
    wrapper: (goMod) => ({
      requires: [`github.com/pulumi/pulumi/sdk/v3 ${PULUMI_VERSION}`],
      replaces: pulumiReplaces(goMod, PULUMI_VERSION),
    }),
    ldflags: `-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=${PULUMI_VERSION}`,
  },
  {
    name: "pulumi-language-nodejs",
    binaries: ["pulumi-language-nodejs"],
    module: "github.com/pulumi/pulumi/sdk/v3",
    version: LANGUAGE_HOST_VERSION,
    packages: ["github.com/pulumi/pulumi/sdk/v3/nodejs/cmd/pulumi-language-nodejs"],
    wrapper: (goMod) => ({ requires: [], replaces: pulumiReplaces(goMod, LANGUAGE_HOST_VERSION) }),
    ldflags: `-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=${LANGUAGE_HOST_VERSION}`,
  },
  {
    name: "pulumi-resource-kubernetes",
    binaries: ["pulumi-resource-kubernetes"],
    module: PROVIDER_MODULE,
    version: KUBERNETES_PROVIDER_MODULE_VERSION,
    packages: ["./cmd/pulumi-resource-kubernetes"],
    wrapper: (goMod) => ({ requires: [], replaces: requiredVersionReplaces(goMod) }),
    ldflags: `-X ${PROVIDER_MODULE}/pkg/version.Version=${KUBERNETES_PROVIDER_VERSION.slice(1)}`,
    // The module's own main embeds files that its `go generate` writes and its zip lacks: the
    // schema with the version set, and the Terraform mapping. This main serves the same.
    files: (moduleDir) => {
      const cmd = join(moduleDir, "cmd", "pulumi-resource-kubernetes");
      const schema = z
        .record(z.string(), z.unknown())
        .parse(JSON.parse(readFileSync(join(cmd, "schema.json"), "utf8")));
      return {
        "cmd/pulumi-resource-kubernetes/schema-embed.json": JSON.stringify({
          ...schema,
          version: KUBERNETES_PROVIDER_VERSION.slice(1),
        }),
        "cmd/pulumi-resource-kubernetes/terraform-mapping-embed.json": JSON.stringify(
          JSON.parse(readFileSync(join(cmd, "terraform-mapping.json"), "utf8")),
        ),
        "cmd/pulumi-resource-kubernetes/main.go": [
          `// Generated by scripts/tools.ts: the provider's main over its public provider.Serve.`,
          "package main",
          "",
          "import (",
          '\t_ "embed"',
          "",
          `\t"${PROVIDER_MODULE}/pkg/provider"`,
          `\t"${PROVIDER_MODULE}/pkg/version"`,
          ")",
          "",
          "//go:embed schema-embed.json",
          "var pulumiSchema []byte",
          "",
          "//go:embed terraform-mapping-embed.json",
          "var terraformMapping []byte",
          "",
          'func main() { provider.Serve("kubernetes", version.Version, pulumiSchema, terraformMapping) }',
          "",
        ].join("\n"),
      };
    },
  },
];
