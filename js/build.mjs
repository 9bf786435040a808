// Bundles each view (src/<view>.ts plus the shared helpers it imports) into one pure ES module
// inside the Python package, where the widgets' `_esm` point: a user of the wheel needs no Node.
//   node build.mjs          build (minified)
//   node build.mjs --watch  rebuild on save (with ANYWIDGET_HMR=1 the notebook reloads the view)
//   node build.mjs --check  fail when the committed modules differ from a fresh build
import { readFileSync, writeFileSync, renameSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
export const OUT = join(here, "..", "semheat_widgets", "widgets", "js");
export const VIEWS = ["cell_keys", "concept_picker", "image_grid"];
const HEADER = "// Built from js/src by `npm run build` (esbuild); edit the TypeScript, not this file.";

const options = {
  entryPoints: VIEWS.map((v) => join(here, "src", `${v}.ts`)),
  outdir: OUT,
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  legalComments: "none",
  banner: { js: HEADER },
  charset: "utf8",
  logLevel: "warning",
};

const mode = process.argv[2];
if (mode === "--watch") {
  const ctx = await esbuild.context({ ...options, logLevel: "info" });
  await ctx.watch();
} else if (mode === "--check") {
  const result = await esbuild.build({ ...options, write: false });
  const stale = [];
  for (const file of result.outputFiles) {
    let committed = "";
    try {
      committed = readFileSync(file.path, "utf8");
    } catch {
      committed = "(missing)";
    }
    if (committed !== file.text) stale.push(file.path);
  }
  if (stale.length) {
    console.error(`built modules differ from js/src (run \`npm run build\` in js/ and commit):\n  ${stale.join("\n  ")}`);
    process.exit(1);
  }
  console.log(`built modules match js/src (${result.outputFiles.length} files)`);
} else {
  // write each module atomically (temp sibling + rename): a running notebook never reads half
  const result = await esbuild.build({ ...options, write: false });
  for (const file of result.outputFiles) {
    const tmp = `${file.path}.tmp-${process.pid}`;
    writeFileSync(tmp, file.contents);
    renameSync(tmp, file.path);
    console.log(`${file.path.slice(join(here, "..").length + 1)}  ${file.contents.length} bytes`);
  }
}
