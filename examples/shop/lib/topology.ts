/**
 * The shop's three services and who calls whom: frontend → checkout → payments. The one place the
 * call graph is written down; each service's `main.ts` runs its entry, and deployment code (the
 * Kubernetes manifests, the image builds, the e2e test) reads the same table.
 */
import type { ShopServiceSpec } from "./config";

/** The port every shop service listens on in a cluster, and the port of its Service. */
export const SHOP_PORT = 8080;

/** The shop's services by name. */
export const shopServices = {
  frontend: {
    name: "frontend",
    calls: { name: "checkout", urlVariable: "CHECKOUT_URL", defaultUrl: "http://checkout:8080" },
  },
  checkout: {
    name: "checkout",
    calls: { name: "payments", urlVariable: "PAYMENTS_URL", defaultUrl: "http://payments:8080" },
  },
  payments: { name: "payments" },
} as const satisfies Record<string, ShopServiceSpec>;

/** A shop service's name. */
export type ShopServiceName = keyof typeof shopServices;
