/**
 * `JitExpiry`: a Pulumi dynamic resource that records a JIT grant's expiry in the stack's state,
 * so that "the expiry is in the past" is checked only when the expiry is set or changed.
 *
 * Why: a JitGrant that has expired (and whose binding the access reaper deleted) stays in its
 * stack's program until someone removes it. Checking "in the past" against the clock on every
 * run would make every later `pulumi up` of that stack fail. The engine hands `check()` the
 * inputs recorded in the state (`olds`): an unchanged expiry was checked when it was set.
 *
 * The provider functions use only plain code: Pulumi serializes them into the state.
 */
import * as pulumi from "@pulumi/pulumi";

/** Inputs (and outputs) of {@link JitExpiry}. */
export interface JitExpiryProps {
  /** RFC 3339 expiry, already checked for shape and ceiling by `validateJitExpiry`. */
  expiresAt: string;
}

/** The provider behind {@link JitExpiry} (exported so it can be tested directly). */
export const jitExpiryProvider: pulumi.dynamic.ResourceProvider<JitExpiryProps, JitExpiryProps> = {
  check(olds, news) {
    const unchanged = olds.expiresAt !== undefined && olds.expiresAt === news.expiresAt;
    const at = Date.parse(String(news.expiresAt).toUpperCase());
    if (!unchanged && !(at > Date.now())) {
      const now = new Date().toISOString();
      return Promise.resolve({
        inputs: news,
        failures: [
          { property: "expiresAt", reason: `${news.expiresAt} is in the past (now is ${now})` },
        ],
      });
    }
    return Promise.resolve({ inputs: news });
  },
  create(inputs) {
    return Promise.resolve({ id: inputs.expiresAt, outs: inputs });
  },
  update(_id, _olds, news) {
    return Promise.resolve({ outs: news });
  },
};

/** The recorded expiry of one JIT grant (no cloud object: it lives in the stack's state). */
export class JitExpiry extends pulumi.dynamic.Resource {
  declare readonly expiresAt: pulumi.Output<string>;

  constructor(name: string, props: JitExpiryProps, opts?: pulumi.CustomResourceOptions) {
    super(jitExpiryProvider, name, { ...props }, opts, "shardworks", "JitExpiry");
  }
}
