/**
 * `npm run images -- build <name|all> [--registry host[/prefix]] [--dest-creds u:p] …`: builds
 * the testbed's images (cached) and prints each pinned reference, `name ref size`. Without
 * `--registry` they go to the testbed registry (started if needed) at localhost:5055/shardworks.
 */
import { Command, InvalidArgumentError } from "commander";
import type { BuildOptions, BuiltImage, PushTarget } from "./build";
import { formatSize, ImageInputError, parsePushTarget } from "./build";
import {
  buildNodeAppImage,
  ensureEtcdImage,
  ensureGatewayImage,
  ensurePauseImage,
  ensureRuntimeImage,
  ensureTestHttpImage,
} from "./catalog";

/** The named images `build` knows, in the order `all` builds them. */
export const namedImages = {
  pause: ensurePauseImage,
  "test-http": ensureTestHttpImage,
  runtime: ensureRuntimeImage,
  gateway: ensureGatewayImage,
  etcd: ensureEtcdImage,
} as const satisfies Record<string, (options?: BuildOptions) => Promise<BuiltImage>>;

interface BuildFlags {
  registry?: string;
  destCreds?: string;
  destAuthfile?: string;
  destTlsVerify?: boolean;
  destCertDir?: string;
  force?: boolean;
  json?: boolean;
}

function parseBool(value: string): boolean {
  if (value === "true") return true;
  if (value === "false") return false;
  throw new InvalidArgumentError("use true or false");
}

/** Runs the CLI on `argv` (process.argv form). */
export async function imagesCli(argv: readonly string[]): Promise<void> {
  const program = new Command("images")
    .description("Build the testbed's OCI images without Docker and push them, pinned by digest")
    .showHelpAfterError();
  program
    .command("build")
    .description(`build and push images: ${Object.keys(namedImages).join(", ")}, all, or app:<dir>`)
    .argument("<names...>", "image names, `all`, or `app:<dir>` for a Node.js service directory")
    .option("--registry <host[/prefix]>", "push here instead of localhost:5055/shardworks")
    .option("--dest-creds <user:password>", "registry credentials (skopeo --dest-creds)")
    .option("--dest-authfile <path>", "registry auth file (skopeo --dest-authfile)")
    .option(
      "--dest-tls-verify <bool>",
      "verify TLS (default: true, false for localhost)",
      parseBool,
    )
    .option("--dest-cert-dir <dir>", "CA/client certificates (skopeo --dest-cert-dir)")
    .option("--force", "rebuild and push even when the cache matches")
    .option("--json", "print the results as JSON")
    .action(async (names: string[], flags: BuildFlags) => {
      let target: PushTarget | undefined;
      if (flags.registry !== undefined) {
        target = {
          registry: flags.registry,
          creds: flags.destCreds,
          authfile: flags.destAuthfile,
          tlsVerify: flags.destTlsVerify,
          certDir: flags.destCertDir,
        };
        parsePushTarget(target); // fail before building anything
      }
      const wanted = names.includes("all") ? Object.keys(namedImages) : names;
      for (const name of wanted) {
        if (!name.startsWith("app:") && !(name in namedImages)) {
          throw new ImageInputError(
            `unknown image ${JSON.stringify(name)}; build one of: ${Object.keys(namedImages).join(", ")}, all, or app:<dir>`,
          );
        }
      }
      const options: BuildOptions = { target, force: flags.force };
      const results: Record<string, BuiltImage> = {};
      for (const name of wanted) {
        const started = Date.now();
        results[name] = name.startsWith("app:")
          ? await buildNodeAppImage(name.slice(4), options)
          : await namedImages[name as keyof typeof namedImages](options);
        const r = results[name];
        process.stderr.write(
          `images: ${name}: ${r.cached ? "cached" : "built"} in ${((Date.now() - started) / 1000).toFixed(1)} s\n`,
        );
      }
      if (flags.json === true) {
        process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
        return;
      }
      for (const [name, r] of Object.entries(results)) {
        process.stdout.write(`${name.padEnd(10)} ${r.ref}  ${formatSize(r.size)}\n`);
      }
    });
  await program.parseAsync([...argv]);
}

if (require.main === module) {
  imagesCli(process.argv).catch((error: unknown) => {
    // Input problems are the user's to fix: the message alone. Anything else: the message too,
    // since tool failures already carry the command and its output.
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`images: error: ${message}\n`);
    process.exit(error instanceof ImageInputError ? 2 : 1);
  });
}
