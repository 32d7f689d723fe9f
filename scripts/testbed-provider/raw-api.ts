/**
 * Kubernetes objects as raw JSON. `KubernetesObjectApi` from `@kubernetes/client-node` finds each
 * kind's REST path (API discovery, namespaced or not), but its bodies go through the typed model
 * serializer, which expects the models' JS names: `LimitRangeItem.default` (JS `_default`) was
 * silently dropped on apply. So this subclass keeps its discovery (`specUriPath`) and sends and
 * receives the objects as the API server's JSON, over `https` with the kubeconfig's credentials
 * (`KubeConfig.applyToHTTPSOptions`).
 */
import * as k8s from "@kubernetes/client-node";
import { request as httpsRequest, type RequestOptions } from "node:https";
import { request as httpRequest } from "node:http";
import { z } from "zod";
import type { JsonObject } from "./logic";

/** An error status from the API server, with its `Status.message`. */
export class KubeApiError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

const Status = z.object({ message: z.string() });

export class RawObjectApi extends k8s.KubernetesObjectApi {
  private kubeConfig: k8s.KubeConfig | undefined;

  static forConfig(config: k8s.KubeConfig): RawObjectApi {
    const api = config.makeApiClient(RawObjectApi);
    api.setDefaultNamespace(config);
    api.kubeConfig = config;
    return api;
  }

  private async send(
    method: string,
    object: k8s.KubernetesObject,
    action: "read" | "patch" | "delete",
    query: Record<string, string>,
    contentType?: string,
    body?: string,
  ): Promise<JsonObject> {
    const config = this.kubeConfig;
    const server = config?.getCurrentCluster()?.server;
    if (config === undefined || server === undefined) {
      throw new Error("the kubeconfig has no current cluster");
    }
    const path = await this.specUriPath(structuredClone(object), action);
    const url = new URL(`${server.replace(/\/$/, "")}${path}`);
    for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
    const options: RequestOptions = {
      method,
      headers: {
        accept: "application/json",
        ...(contentType === undefined ? {} : { "content-type": contentType }),
      },
    };
    await config.applyToHTTPSOptions(options);
    const { status, text } = await new Promise<{ status: number; text: string }>(
      (resolve, reject) => {
        const send = url.protocol === "https:" ? httpsRequest : httpRequest;
        const req = send(url, options, (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (chunk: Buffer) => chunks.push(chunk));
          res.on("end", () =>
            resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }),
          );
          res.on("error", reject);
        });
        req.on("error", reject);
        req.end(body);
      },
    );
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    if (status < 200 || status > 299) {
      const message = Status.safeParse(parsed);
      throw new KubeApiError(
        status,
        `the API server refused ${method} ${url.pathname} (${status}): ${message.success ? message.data.message : text}`,
      );
    }
    return (parsed ?? {}) as JsonObject;
  }

  getRaw(object: k8s.KubernetesObject): Promise<JsonObject> {
    return this.send("GET", object, "read", {});
  }

  /** Server-side apply (`force`: this field manager takes over conflicting fields). */
  applyRaw(object: JsonObject, fieldManager: string): Promise<JsonObject> {
    return this.send(
      "PATCH",
      object,
      "patch",
      { fieldManager, force: "true" },
      "application/apply-patch+yaml",
      JSON.stringify(object),
    );
  }

  deleteRaw(object: k8s.KubernetesObject): Promise<JsonObject> {
    return this.send("DELETE", object, "delete", {});
  }
}
