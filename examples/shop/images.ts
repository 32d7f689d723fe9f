/**
 * The shop's images, built without Docker by the project's image builder (scripts/images): one per
 * service, the shared Node base layer, the packages of `package.json`, this directory. A fork's
 * image is the same code with another `SERVICE_VERSION` in the image's config: a rebuilt image
 * with its own digest, whose answers say which variant served.
 */
import { resolve } from "node:path";
import type { BuildOptions, BuiltImage } from "../../scripts/images/build";
import { buildNodeAppImage } from "../../scripts/images/catalog";
import { SHOP_DIR } from "./index";
import { SHOP_PORT, shopServices, type ShopServiceName } from "./lib/topology";

/** Build (cached) and push one shop service's image; `version` is what its answers call it. */
export function buildShopImage(
  service: ShopServiceName,
  version = "baseline",
  options: BuildOptions = {},
): Promise<BuiltImage> {
  return buildNodeAppImage(SHOP_DIR, {
    ...options,
    name: version === "baseline" ? `shop/${service}` : `shop/${service}-${version}`,
    main: `${service}/main.ts`,
    projectDir: resolve(SHOP_DIR, "../.."),
    env: { SERVICE_VERSION: version },
    ports: [SHOP_PORT],
  });
}

/**
 * `node --import tsx examples/shop/images.ts [<service>[@<version>] …]`: builds and pushes them
 * (default: the three baselines) and prints `<service> <version> <pinned ref>` per image.
 */
async function main(argv: readonly string[]): Promise<void> {
  const wanted = argv.length > 0 ? argv : Object.keys(shopServices);
  for (const spec of wanted) {
    const [service, version = "baseline"] = spec.split("@", 2) as [string, string?];
    if (!(service in shopServices)) {
      throw new Error(
        `unknown service ${JSON.stringify(service)}; build one of ${Object.keys(shopServices).join(", ")}, optionally as <service>@<version>`,
      );
    }
    const image = await buildShopImage(service as ShopServiceName, version);
    console.log(`${service} ${version} ${image.ref}`);
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((error: unknown) => {
    console.error(`shop images: ${(error as Error).message}`);
    process.exit(1);
  });
}
