/** Kubeconfig files: bearer-token users (admin, test users) and certificate users (components). */
import { stringify } from "yaml";

/** How a kubeconfig user authenticates. */
export type Credentials = { token: string } | { cert: string; key: string };

/** A one-context kubeconfig for `server`. */
export function kubeconfigYaml(
  name: string,
  server: string,
  caCert: string,
  user: string,
  credentials: Credentials,
): string {
  return stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [
      {
        name,
        cluster: { server, "certificate-authority-data": Buffer.from(caCert).toString("base64") },
      },
    ],
    users: [
      {
        name: user,
        user:
          "token" in credentials
            ? { token: credentials.token }
            : { "client-certificate": credentials.cert, "client-key": credentials.key },
      },
    ],
    contexts: [{ name, context: { cluster: name, user } }],
    "current-context": name,
  });
}
