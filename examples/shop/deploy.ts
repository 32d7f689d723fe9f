/**
 * The shop's Kubernetes objects, as the team that owns it applies them (`kubectl apply -f -`):
 * its namespace and one Deployment per service, labelled `app: <service>`, probed on `/healthz`.
 * No Service: on a Shardworks platform the platform stack owns the Service names (ADR 0012: each
 * name resolves to the gateway, `<name>-baseline` selects these pods), and the platform's
 * `shardworks:baseline` names these labels ({@link shopBaseline}).
 *
 * `node --import tsx examples/shop/deploy.ts <namespace> frontend=<image> checkout=<image>
 * payments=<image>` prints the YAML.
 */
import { stringify } from "yaml";
import { SHOP_PORT, shopServices, type ShopServiceName } from "./lib/topology";

/** Each service's image reference (pinned by digest, e.g. from `buildShopImage`). */
export type ShopImages = Record<ShopServiceName, string>;

/** The objects of the shop in `namespace`, Namespace first. */
export function shopObjects(namespace: string, images: ShopImages): Record<string, unknown>[] {
  const deployments = (Object.keys(shopServices) as ShopServiceName[]).map((service) => ({
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: service, namespace, labels: { app: service } },
    spec: {
      replicas: 1,
      selector: { matchLabels: { app: service } },
      template: {
        metadata: { labels: { app: service } },
        spec: {
          automountServiceAccountToken: false,
          securityContext: { runAsNonRoot: true, seccompProfile: { type: "RuntimeDefault" } },
          containers: [
            {
              name: service,
              image: images[service],
              // SERVICE_VERSION comes from the image (a fork's image says its own); the peers'
              // URLs are the in-cluster defaults (`http://checkout:8080`, …).
              ports: [{ name: "http", containerPort: SHOP_PORT }],
              readinessProbe: { httpGet: { path: "/healthz", port: SHOP_PORT }, periodSeconds: 2 },
              livenessProbe: {
                httpGet: { path: "/healthz", port: SHOP_PORT },
                initialDelaySeconds: 20,
                periodSeconds: 10,
              },
              resources: {
                requests: { cpu: "50m", memory: "96Mi" },
                limits: { cpu: "500m", memory: "256Mi" },
              },
              securityContext: {
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: true,
                capabilities: { drop: ["ALL"] },
              },
            },
          ],
        },
      },
    },
  }));
  return [{ apiVersion: "v1", kind: "Namespace", metadata: { name: namespace } }, ...deployments];
}

/** The platform's `shardworks:baseline` for the shop: image, port, namespace, pods' labels. */
export function shopBaseline(
  namespace: string,
  images: ShopImages,
): Record<
  ShopServiceName,
  { image: string; port: number; namespace: string; selector: { app: string } }
> {
  const entry = (service: ShopServiceName) => ({
    image: images[service],
    port: SHOP_PORT,
    namespace,
    selector: { app: service },
  });
  return { frontend: entry("frontend"), checkout: entry("checkout"), payments: entry("payments") };
}

if (require.main === module) {
  const [namespace, ...pairs] = process.argv.slice(2);
  const images = Object.fromEntries(pairs.map((p) => p.split("=", 2))) as Partial<ShopImages>;
  const missing = (Object.keys(shopServices) as ShopServiceName[]).filter((s) => !images[s]);
  if (namespace === undefined || missing.length > 0) {
    console.error(
      `usage: deploy.ts <namespace> frontend=<image> checkout=<image> payments=<image> (missing: ${missing.join(", ") || "namespace"})`,
    );
    process.exit(2);
  }
  for (const object of shopObjects(namespace, images as ShopImages)) {
    process.stdout.write(`---\n${stringify(object)}`);
  }
}
