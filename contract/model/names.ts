/**
 * Names and labels as Kubernetes has them, shared by every record: DNS labels, node names (DNS
 * subdomains), label keys and values, maps of labels, and the control characters no name holds.
 */
import { z } from "zod";

/** DNS-1123 label: what a Kubernetes namespace suffix, a node name or a sandbox id may look like. */
export const dnsLabel = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, {
    message:
      "must be lowercase letters, digits and '-', starting and ending with a letter or digit",
  });

/**
 * Whether `value` holds a C0 control character or DEL (NUL, CR, LF, TAB, ESC, …): never part of a
 * name, a reference or an owner, and the stuff of header and log injection.
 */
export function hasControlCharacter(value: string): boolean {
  for (let i = 0; i < value.length; i += 1) {
    const code = value.charCodeAt(i);
    if (code < 0x20 || code === 0x7f) return true;
  }
  return false;
}

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** A label key's name part and a non-empty label value, as Kubernetes has them. */
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

/**
 * Why `key` is not a Kubernetes label key (`[prefix/]name`, as node labels, node selectors and
 * taint keys are), or undefined: the name 1-63 of `[A-Za-z0-9-_.]` starting and ending
 * alphanumeric, the optional prefix a DNS subdomain of at most 253 characters.
 */
export function labelKeyProblem(key: string): string | undefined {
  const example = 'e.g. "shardworks.dev/microvm" or "zone"';
  const parts = key.split("/");
  if (parts.length > 2) {
    return `a label key is [prefix/]name with at most one '/'; ${example}`;
  }
  const [prefix, name] = parts.length === 2 ? parts : [undefined, parts[0]];
  if (
    prefix !== undefined &&
    (prefix.length > 253 ||
      !DNS_SUBDOMAIN.test(prefix) ||
      prefix.split(".").some((label) => label.length > 63))
  ) {
    return `a label key's prefix (before '/') must be a DNS subdomain: lowercase letters, digits, '-' and '.', at most 253 characters; ${example}`;
  }
  if (name === undefined || name.length < 1 || name.length > 63 || !LABEL_NAME.test(name)) {
    return `a label key's name (after any prefix/) must be 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit; ${example}`;
  }
  return undefined;
}

/** Why `value` is not a Kubernetes label value (≤ 63 of `[A-Za-z0-9-_.]`, or empty), or undefined. */
export function labelValueProblem(value: string): string | undefined {
  if (value === "" || (value.length <= 63 && LABEL_NAME.test(value))) return undefined;
  return "a label value must be empty or at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit";
}

/** A Kubernetes label key (`[prefix/]name`). */
export const labelKeySchema = z.string().superRefine((key, ctx) => {
  const problem = labelKeyProblem(key);
  if (problem !== undefined) ctx.addIssue({ code: "custom", message: problem });
});

/** A Kubernetes label value (may be empty). */
export const labelValueSchema = z.string().superRefine((value, ctx) => {
  const problem = labelValueProblem(value);
  if (problem !== undefined) ctx.addIssue({ code: "custom", message: problem });
});

/**
 * Labels (node labels, a sandbox's node selector) as Kubernetes has them: every problem is
 * reported at `<field>.<key>`, so a key and its value are named in one place.
 */
export function labelsSchema(maxEntries?: number) {
  return z.record(z.string(), z.string()).superRefine((labels, ctx) => {
    const entries = Object.entries(labels);
    if (maxEntries !== undefined && entries.length > maxEntries) {
      ctx.addIssue({
        code: "custom",
        message: `at most ${maxEntries} entries (there are ${entries.length})`,
      });
      return;
    }
    for (const [key, value] of entries) {
      const problem = labelKeyProblem(key) ?? labelValueProblem(value);
      if (problem !== undefined) ctx.addIssue({ code: "custom", path: [key], message: problem });
    }
  });
}

/**
 * A node's name: a DNS subdomain (RFC 1123), as Kubernetes names nodes, e.g.
 * `ip-10-0-1-23.ec2.internal` on EKS: dot-separated DNS labels, at most 253 characters.
 */
export const nodeName = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/, {
    message:
      "must be lowercase letters, digits, '-' and '.', each dot-separated part starting and ending with a letter or digit (e.g. ip-10-0-1-23.ec2.internal)",
  })
  .refine((name) => name.split(".").every((label) => label.length <= 63), {
    message: "each dot-separated part must be at most 63 characters",
  });
