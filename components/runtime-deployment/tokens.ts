/**
 * The runtime's tokens: the platform token and the node agents' API token derived from it, in one
 * Secret; how a process gets one (env from the Secret); the checksum that rolls its pods.
 */
import { createHash, createHmac } from "node:crypto";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { Env } from "../../contract";
import { appLabels } from "../common";
import { RuntimeNames } from "./args";
import { ns, type RuntimeScope } from "./scope";

/** Pod template annotation: a checksum of the tokens the pod reads from the Secret. */
export const TOKEN_CHECKSUM_ANNOTATION = "shardworks.dev/token-checksum";

/** The key of the node agents' API token in the token Secret. */
export const AGENT_TOKEN_KEY = "agent-token";

/** The node agents' API token: HMAC-SHA256 of a fixed label under the platform token. */
export function agentTokenOf(platformToken: string): string {
  return createHmac("sha256", platformToken).update("shardworks node agent API").digest("hex");
}

/** The Secret holding the platform token and the agents' token. */
export function createTokenSecret(scope: RuntimeScope): k8s.core.v1.Secret {
  const { name, args } = scope;
  return new k8s.core.v1.Secret(
    `${name}-platform-token`,
    {
      metadata: {
        name: RuntimeNames.tokenSecret,
        namespace: ns,
        labels: appLabels(name, "runtime"),
      },
      type: "Opaque",
      stringData: {
        token: pulumi.secret(args.platformToken),
        // The node agents' API token, derived from the platform token (stable across ups, so
        // no churn): the agents get this key only, never the platform token itself.
        [AGENT_TOKEN_KEY]: pulumi.secret(pulumi.output(args.platformToken).apply(agentTokenOf)),
      },
    },
    scope.inNs,
  );
}

/**
 * The pod template annotations of a process that reads a token. Env from a Secret is read at
 * container start only: a checksum of the tokens in the pod templates of the processes that read
 * them rolls those pods when the platform token changes.
 */
export function tokenChecksumAnnotations(
  platformToken: pulumi.Input<string>,
): Record<string, pulumi.Input<string>> {
  return {
    [TOKEN_CHECKSUM_ANNOTATION]: pulumi.secret(
      pulumi
        .output(platformToken)
        .apply((token) => createHash("sha256").update(agentTokenOf(token)).digest("hex")),
    ),
  };
}

/** The agents' API token, as a process's env. */
export const agentTokenEnv = {
  name: Env.agentToken,
  valueFrom: { secretKeyRef: { name: RuntimeNames.tokenSecret, key: AGENT_TOKEN_KEY } },
};

/**
 * The platform token, as a process's env. Only the scheduler checks tokens; the other processes
 * never see the platform token.
 */
export const platformTokenEnv = {
  name: Env.platformToken,
  valueFrom: { secretKeyRef: { name: RuntimeNames.tokenSecret, key: "token" } },
};
