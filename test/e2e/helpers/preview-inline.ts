/**
 * Run `preview` and then `up` of one stack of OUR program (inline, as in shard.test.ts) in a
 * process of its own and print `{ preview, up }` (each `"ok"` or the error message) as JSON.
 *
 * Why a separate process: when the program throws (bad stack config), `@pulumi/pulumi`'s inline
 * runtime leaves rejected promises unhandled in the host process. The CLI's language host is a
 * process of its own too; inside an ava worker they would fail the test run.
 *
 * Usage: tsx preview-inline.ts <workDir> <stackName>   (engine environment from process.env)
 */
import { LocalWorkspace, PulumiCommand } from "@pulumi/pulumi/automation";
import { dirname, join, resolve } from "node:path";
import { z } from "zod";

const Args = z.tuple([z.string().min(1), z.string().min(1)]);

async function main(): Promise<void> {
  const [workDir, stackName] = Args.parse(process.argv.slice(2));
  const pulumiBinary = z.string().min(1).parse(process.env.SHARDWORKS_PULUMI);
  const indexPath = join(resolve(__dirname, "..", "..", ".."), "index.ts");
  const stack = await LocalWorkspace.createOrSelectStack(
    {
      stackName,
      projectName: "shardworks",
      program: () => {
        // Evaluated afresh for each run (see shard.test.ts).
        delete require.cache[require.resolve(indexPath)];
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        return Promise.resolve(require(indexPath) as Record<string, unknown>);
      },
    },
    { workDir, pulumiCommand: await PulumiCommand.get({ root: dirname(dirname(pulumiBinary)) }) },
  );
  const outcome = async (run: () => Promise<unknown>) => {
    try {
      await run();
      return "ok";
    } catch (error) {
      return error instanceof Error ? error.message : String(error);
    }
  };
  const preview = await outcome(() => stack.preview());
  const up = await outcome(() => stack.up());
  process.stdout.write(`${JSON.stringify({ preview, up })}\n`);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`${String(error)}\n`);
    process.exit(2);
  },
);
