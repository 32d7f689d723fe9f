/**
 * The import direction (ADR 0017) as `npm run lint` enforces it: the project's own ESLint config
 * run on code placed in each tree, for every way of spelling a crossing import.
 */
import test from "ava";
import { ESLint } from "eslint";
import { join } from "node:path";

const root = join(__dirname, "../..");
// Only the boundary rules, and so no type information: a plain parse, not the whole project's.
const eslint = new ESLint({
  cwd: root,
  ruleFilter: ({ ruleId }) =>
    ruleId === "no-restricted-imports" || ruleId === "no-restricted-syntax",
  overrideConfig: { languageOptions: { parserOptions: { projectService: false } } },
});

/** The boundary rules' messages for `code` linted as if it were the file `file`. */
async function boundaryErrors(file: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(`${code}\nexport {};\n`, { filePath: join(root, file) });
  return (result?.messages ?? [])
    .filter((m) => m.ruleId === "no-restricted-imports" || m.ruleId === "no-restricted-syntax")
    .map((m) => m.message);
}

const crossings: [file: string, code: string, says: RegExp][] = [
  ["runtime/lib/index.ts", 'import { a } from "../../components/common";', /Pulumi side/],
  ["runtime/lib/index.ts", 'import { a } from "../lib/../../components/common";', /Pulumi side/],
  ["runtime/lib/index.ts", 'export { a } from "../../stacks/rollout";', /Pulumi side/],
  ["runtime/lib/index.ts", 'await import("../../stacks/rollout");', /Pulumi side/],
  ["runtime/lib/index.ts", 'require("../../policy/index");', /Pulumi side/],
  ["runtime/lib/index.ts", 'import * as pulumi from "@pulumi/pulumi";', /without the Pulumi SDK/],
  ["contract/index.ts", 'export { freePort } from "../runtime/lib/ports";', /imports neither/],
  ["contract/index.ts", 'import "../test/helpers/runtime";', /imports neither/],
  ["components/common.ts", 'import { a } from "../contract/../runtime/lib/ports";', /runtime/],
  ["stacks/rollout.ts", 'await import("../runtime/lib/ports");', /runtime/],
];

test("an import across a boundary fails lint, however it is spelled", async (t) => {
  for (const [file, code, says] of crossings) {
    const errors = await boundaryErrors(file, code);
    t.true(
      errors.some((m) => says.test(m)),
      `${file}: ${code} → ${errors.join("; ") || "no error"}`,
    );
  }
});

test("imports along the direction are clean", async (t) => {
  const allowed: [string, string][] = [
    ["runtime/lib/index.ts", 'import { Env } from "../../contract";'],
    ["components/common.ts", 'import { Env } from "../contract/names";'],
    ["components/common.ts", 'import { a } from "./runtime-deployment/args";'],
    ["stacks/rollout.ts", 'import { a } from "../components/common";'],
  ];
  for (const [file, code] of allowed) t.deepEqual(await boundaryErrors(file, code), [], code);
});
