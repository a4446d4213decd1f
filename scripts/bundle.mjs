#!/usr/bin/env node
/**
 * `npm run build`'s second half: the compiled CLI (dist/cli.js, from tsc) and every runtime
 * dependency bundled by esbuild, so Node compiles a few files instead of resolving and reading
 * some 400 modules at every start (retag, the idle daemon cycle, every --help: B6), and
 * `npm install -g` of the packed tarball installs nothing beside it.
 *
 * - dist/gh-gitlab-sync.cjs: the CLI and what every command loads (commander, pino, Octokit,
 *   gitbeaker, zod, …), which bin/gh-gitlab-sync runs.
 * - dist/vendor/<id>.cjs: each dependency loaded on first use (src/lazy.ts:
 *   `lazyRequire("undici")`, …), bundled on its own, so a command that never uses it never reads
 *   or parses it. The ids are collected from the compiled code; lazy.js is given, in the bundle,
 *   a table of requires of those files.
 * - dist/load-cached.cjs (scripts/load-cached.cjs), which loads each of them, and beside each a
 *   V8 code cache (`<file>.cache`) written here by running the file once in a child Node.
 * - dist/THIRD-PARTY-NOTICES: the licences of everything that went into them, from the
 *   bundles' own lists of inputs.
 */
import { execFileSync } from "node:child_process";
import {
  copyFileSync,
  readFileSync,
  readdirSync,
  writeFileSync,
  existsSync,
  rmSync,
} from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const dist = path.join(root, "dist");
const OUT = path.join(dist, "gh-gitlab-sync.cjs");
const VENDOR = path.join(dist, "vendor");
const NOTICES = path.join(dist, "THIRD-PARTY-NOTICES");
const LOADER = path.join(dist, "load-cached.cjs");

function compiledFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) return file === VENDOR ? [] : compiledFiles(file);
    return entry.name.endsWith(".js") ? [file] : [];
  });
}

/** Every `lazyRequire<…>("id")` of the compiled code (types are gone: `lazyRequire("id")`). */
function lazyIds() {
  const ids = new Set();
  for (const file of compiledFiles(dist)) {
    for (const match of readFileSync(file, "utf8").matchAll(/\blazyRequire\(\s*"([^"]+)"\s*\)/g))
      ids.add(match[1]);
  }
  return [...ids].sort();
}

/** The file a lazy dependency is bundled into, relative to dist/. */
const vendorFile = (id) => `vendor/${id.replace(/^@/, "").replace(/\//g, "__")}.cjs`;

const ids = lazyIds();
/** lazy.js as the bundle has it: the same function, over loads of the vendor bundles. */
const lazyInBundle = `
const load = (file) => require("./load-cached.cjs").loadCached(require("node:path").join(__dirname, file));
const loaders = {
${ids.map((id) => `  ${JSON.stringify(id)}: () => load(${JSON.stringify(vendorFile(id))}),`).join("\n")}
};
export function lazyRequire(id) {
  const load = loaders[id];
  if (!load) throw new Error(\`lazyRequire: \${id} is not in the bundle (rebuild)\`);
  let loaded;
  return () => (loaded ??= load());
}
`;

const lazyPlugin = {
  name: "lazy-requires",
  setup(b) {
    b.onLoad({ filter: /[\\/]dist[\\/]lazy\.js$/ }, () => ({
      contents: lazyInBundle,
      loader: "js",
      resolveDir: dist,
    }));
    // The loader is a file beside this one at run time, not part of it.
    b.onResolve({ filter: /^\.\/load-cached\.cjs$/ }, (args) => ({
      path: args.path,
      external: true,
    }));
  },
};

const common = {
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node20",
  minify: true,
  // Names kept: error classes are told apart by name in messages and logs.
  keepNames: true,
  legalComments: "none",
  metafile: true,
  logLevel: "warning",
  // ssh2 (through dockerode's docker-modem) tries optional native add-ons inside try/catch;
  // unzipper requires the AWS SDK only inside Open.s3_v3, which this tool never calls.
  external: ["*.node", "cpu-features", "@aws-sdk/client-s3"],
};

rmSync(VENDOR, { recursive: true, force: true });
const main = await build({
  ...common,
  entryPoints: [path.join(dist, "cli.js")],
  outfile: OUT,
  // The CLI reads ../package.json (its version) relative to its own file, as dist/cli.js does.
  define: { "import.meta.url": "__bundleUrl" },
  banner: { js: `const __bundleUrl = require("node:url").pathToFileURL(__filename).href;` },
  plugins: [lazyPlugin],
});
const resolve = createRequire(path.join(root, "package.json")).resolve;
const vendor = await build({
  ...common,
  entryPoints: Object.fromEntries(
    ids.map((id) => [vendorFile(id).replace(/\.cjs$/, ""), resolve(id)]),
  ),
  outdir: dist,
  outExtension: { ".js": ".cjs" },
});

/** The packages whose code is in the bundles: the nearest package.json above each input. */
function bundledPackages(...metafiles) {
  const packages = new Map();
  for (const input of metafiles.flatMap((m) => Object.keys(m.inputs))) {
    const absolute = path.resolve(root, input);
    const marker = absolute.lastIndexOf(`${path.sep}node_modules${path.sep}`);
    if (marker < 0) continue;
    const rest = absolute.slice(marker + "/node_modules/".length).split(path.sep);
    const name = rest[0]?.startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0];
    const dir = path.join(absolute.slice(0, marker), "node_modules", name);
    if (!packages.has(dir)) packages.set(dir, name);
  }
  return packages;
}

function licenceText(dir) {
  const file = readdirSync(dir).find((n) => /^(licen[cs]e|copying|notice)(\.|$)/i.test(n));
  return file ? readFileSync(path.join(dir, file), "utf8").trim() : undefined;
}

const seen = new Set();
const entries = [...bundledPackages(main.metafile, vendor.metafile)]
  .map(([dir, name]) => {
    const pkg = JSON.parse(readFileSync(path.join(dir, "package.json"), "utf8"));
    const licence =
      typeof pkg.license === "string" ? pkg.license : (pkg.license?.type ?? "see its text");
    const author = typeof pkg.author === "string" ? pkg.author : pkg.author?.name;
    return {
      name,
      version: pkg.version,
      licence,
      text: licenceText(dir),
      home: pkg.homepage,
      author,
    };
  })
  .filter((e) => !seen.has(`${e.name}@${e.version}`) && seen.add(`${e.name}@${e.version}`))
  .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
const missing = entries.filter((e) => !e.text).map((e) => e.name);
const notices = [
  "gh-gitlab-sync bundles the following packages into dist/gh-gitlab-sync.cjs and dist/vendor/.",
  "Their licences follow; gh-gitlab-sync itself is under the Apache License 2.0 (LICENSE).",
  "",
  ...entries.flatMap((e) => [
    "-".repeat(78),
    `${e.name} ${e.version} — ${e.licence}${e.home ? ` — ${e.home}` : ""}`,
    "",
    e.text ??
      `Licensed under ${e.licence}${e.author ? `, copyright ${e.author}` : ""}; the package ships no licence file.`,
    "",
  ]),
].join("\n");
writeFileSync(NOTICES, notices);
const bundles = [OUT, ...ids.map((id) => path.join(dist, vendorFile(id)))];
for (const file of bundles) {
  if (!existsSync(file)) throw new Error(`bundle: ${file} was not written`);
}
copyFileSync(path.join(root, "scripts", "load-cached.cjs"), LOADER);
// In a child: evaluating the bundles defines their modules and nothing more (main is not run).
execFileSync(
  process.execPath,
  [
    "-e",
    `const { writeFileSync } = require("node:fs");
     const { codeCache } = require(${JSON.stringify(LOADER)});
     for (const file of ${JSON.stringify(bundles)}) writeFileSync(file + ".cache", codeCache(file));`,
  ],
  { stdio: "inherit" },
);
process.stdout.write(
  `bundle: ${path.relative(root, OUT)} and ${ids.length} lazy in dist/vendor (${ids.join(", ")}), ${entries.length} packages${missing.length ? `; no licence file in ${missing.join(", ")}` : ""}\n`,
);
