/**
 * The example shop, for code that deploys or tests it (not imported by the services themselves):
 * its call graph, where each service's entry file is, and the environment each one reads.
 */
import { join } from "node:path";
import type { ShopServiceName } from "./lib/topology";

export {
  loadShopConfig,
  ShopConfigError,
  type ShopConfig,
  type ShopServiceSpec,
} from "./lib/config";
export type { ShopAnswer } from "./lib/service";
export { SHOP_PORT, shopServices, type ShopServiceName } from "./lib/topology";

/** This directory: the build context of every shop image (the services share `lib/`). */
export const SHOP_DIR = __dirname;

/** The TypeScript entry of one shop service (run it with `node --import tsx <entry>`). */
export function shopServiceEntry(name: ShopServiceName): string {
  return join(SHOP_DIR, name, "main.ts");
}
