/**
 * A cluster's certificates, as kubeadm lays them out: one CA; the API server's serving
 * certificate (loopback, the host's veth address and the `kubernetes` Service IP); a client
 * certificate per component (the identities the default RBAC bindings and the Node authorizer
 * know); the kubelet's serving certificate; the service-account key pair; a front-proxy CA for
 * aggregated APIs. Made once per cluster and network slot (`pki/spec.json`).
 */
import { existsSync, readFileSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { makeCertificate, openssl } from "../pki";
import type { NodeNetwork } from "./network";

/** Client identities, by file stem: subject. */
export const CLIENTS = {
  "controller-manager": "/CN=system:kube-controller-manager",
  scheduler: "/CN=system:kube-scheduler",
  "kube-proxy": "/CN=system:kube-proxy",
  coredns: "/CN=system:coredns",
  "kube-router": "/CN=system:kube-router",
  "apiserver-kubelet-client": "/O=system:masters/CN=kube-apiserver-kubelet-client",
} as const;

/** The client certificate of the node's kubelet (Node authorizer: `system:node:<node>`). */
export const KUBELET_CLIENT = "kubelet-client";

const SPEC_VERSION = 3;

/** Make (or keep) the certificates of a cluster whose node is `nodeName` on `net`. */
export async function ensureClusterPki(
  pki: string,
  net: NodeNetwork,
  nodeName: string,
): Promise<void> {
  const spec = JSON.stringify({ version: SPEC_VERSION, slot: net.slot, nodeName });
  const specFile = join(pki, "spec.json");
  if (existsSync(specFile) && readFileSync(specFile, "utf8") === spec) return;
  // New cluster, or one whose addresses moved: everything anew (kubeconfigs are written each start).
  await rm(pki, { recursive: true, force: true });
  await mkdir(pki, { recursive: true });
  const days = 3650;
  const ca = { cert: "ca.crt", key: "ca.key" };
  const caExtensions = [
    "basicConstraints=critical,CA:TRUE",
    "keyUsage=critical,keyCertSign,cRLSign",
  ];
  const leaf = (usage: "serverAuth" | "clientAuth", sans?: string): string[] => [
    ...(sans === undefined ? [] : [`subjectAltName=${sans}`]),
    "basicConstraints=critical,CA:FALSE",
    "keyUsage=critical,digitalSignature,keyEncipherment",
    `extendedKeyUsage=${usage}`,
  ];
  makeCertificate(pki, {
    algorithm: "ec",
    ...ca,
    days,
    subject: "/CN=shardworks-testbed-ca",
    extensions: caExtensions,
  });
  makeCertificate(pki, {
    algorithm: "ec",
    key: "apiserver.key",
    cert: "apiserver.crt",
    days,
    ca,
    subject: "/CN=kube-apiserver",
    extensions: leaf(
      "serverAuth",
      [
        "IP:127.0.0.1",
        `IP:${net.hostIP}`,
        `IP:${net.apiServiceIP}`,
        "DNS:localhost",
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local",
      ].join(","),
    ),
  });
  for (const [stem, subject] of Object.entries({
    ...CLIENTS,
    [KUBELET_CLIENT]: `/O=system:nodes/CN=system:node:${nodeName}`,
  })) {
    makeCertificate(pki, {
      algorithm: "ec",
      key: `${stem}.key`,
      cert: `${stem}.crt`,
      days,
      ca,
      subject,
      extensions: leaf("clientAuth"),
    });
  }
  makeCertificate(pki, {
    algorithm: "ec",
    key: "kubelet.key",
    cert: "kubelet.crt",
    days,
    ca,
    subject: `/CN=${nodeName}`,
    extensions: leaf("serverAuth", `IP:${net.nodeIP},DNS:${nodeName}`),
  });
  makeCertificate(pki, {
    algorithm: "ec",
    key: "front-proxy-ca.key",
    cert: "front-proxy-ca.crt",
    days,
    subject: "/CN=shardworks-testbed-front-proxy-ca",
    extensions: caExtensions,
  });
  makeCertificate(pki, {
    algorithm: "ec",
    key: "front-proxy-client.key",
    cert: "front-proxy-client.crt",
    days,
    ca: { cert: "front-proxy-ca.crt", key: "front-proxy-ca.key" },
    subject: "/CN=front-proxy-client",
    extensions: leaf("clientAuth"),
  });
  openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "sa.key"], pki);
  openssl(["ec", "-in", "sa.key", "-pubout", "-out", "sa.pub"], pki);
  await writeFile(specFile, spec);
}
