/**
 * The Shardworks CrossGuard policy pack. The Pulumi CLI starts this file through its policy
 * analyzer: `pulumi preview --policy-pack policy` (see docs/readme/policy.md).
 */
import { PolicyPack } from "@pulumi/policy";
import { policies } from "./rules";

new PolicyPack("shardworks", { policies });
