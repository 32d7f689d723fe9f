// ESLint flat config: typescript-eslint (type-aware) plus Pulumi's own rules.
import js from "@eslint/js";
import tseslint from "typescript-eslint";
import pulumi from "@pulumi/eslint-plugin";

export default tseslint.config(
  { ignores: ["node_modules/**", "bench/results/**", "**/*.cjs", "**/*.mjs"] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { "@pulumi": pulumi },
    rules: {
      "@pulumi/no-output-in-template-literal": "error",
      "@pulumi/no-output-instance-in-template-literal": "error",
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-misused-promises": "error",
      "@typescript-eslint/no-unused-vars": [
        "error",
        { argsIgnorePattern: "^_", varsIgnorePattern: "^_" },
      ],
    },
  },
  // Imports run one way (docs/adr/0017-one-contract-module.md): contract/ imports neither side,
  // the runtime never imports the Pulumi side, and the Pulumi side reaches the runtime's facts
  // only through contract/. A wrong import fails `npm run lint`.
  boundary(
    ["contract/**/*.ts"],
    ["components", "stacks", "policy", "runtime", "scripts", "test", "bench"],
    "contract/ is imported by both sides and imports neither: move the shared fact into contract/ instead.",
    {
      group: ["@pulumi/*"],
      message: "contract/ holds plain facts and schemas: no Pulumi SDK (the runtime imports it).",
    },
  ),
  boundary(
    ["runtime/**/*.ts"],
    ["components", "stacks", "policy"],
    "the runtime does not import the Pulumi side: take the shared fact from contract/ (move it there if it is not yet).",
    {
      group: ["@pulumi/*"],
      message:
        "the runtime runs without the Pulumi SDK: Pulumi code belongs in components/ or stacks/.",
    },
  ),
  boundary(
    ["components/**/*.ts", "stacks/**/*.ts", "policy/**/*.ts", "index.ts"],
    ["runtime"],
    "the Pulumi side does not import the runtime: take the shared fact from contract/ (move it there if it is not yet).",
  ),
  {
    files: ["test/**/*.ts", "bench/**/*.ts"],
    rules: {
      "@typescript-eslint/no-unsafe-member-access": "off",
      "@typescript-eslint/no-unsafe-assignment": "off",
    },
  },
);

/**
 * An import boundary (ADR 0017): files matching `files` import nothing from the top-level `dirs`,
 * however the path is spelled (`../x/../../runtime/…` as well as `../runtime/…`), and neither by
 * `import`, `export … from`, dynamic `import()` nor `require()`. A relative path is matched when
 * any of its segments after the leading `./` or `../` names a forbidden directory (no file or
 * directory inside these trees is named like a top-level one). test/unit/import-boundaries.test.ts
 * lints each spelling.
 */
function boundary(files, dirs, message, ...patterns) {
  const crossing = `^\\.\\.?/(?:.*/)?(?:${dirs.join("|")})(?:/|$)`;
  // esquery regex literals cannot hold "/": the same pattern with it escaped.
  const inSelector = crossing.replaceAll("/", "\\x2F");
  return {
    files,
    rules: {
      "no-restricted-imports": ["error", { patterns: [{ regex: crossing, message }, ...patterns] }],
      "no-restricted-syntax": [
        "error",
        { selector: `ImportExpression[source.value=/${inSelector}/]`, message },
        {
          selector: `CallExpression[callee.name="require"][arguments.0.value=/${inSelector}/]`,
          message,
        },
      ],
    },
  };
}
