/**
 * The Shardworks Pulumi program: validate the stack config, then build the platform or the shard
 * stack; the returned object is the stack's outputs. The work lives in `stacks/program.ts`.
 */
import { buildStack, loadConfigOrExplain } from "./stacks/program";

export = buildStack(loadConfigOrExplain());
