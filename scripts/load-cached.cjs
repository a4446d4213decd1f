/* global require, module */
/* eslint-disable @typescript-eslint/no-require-imports */
"use strict";
/**
 * Copied to dist/ by scripts/bundle.mjs. Loads one of the bundle's CommonJS files
 * (dist/gh-gitlab-sync.cjs, dist/vendor/*.cjs) compiled from the V8 code cache that
 * `npm run build` wrote beside it (`<file>.cache`): parsing and compiling the bundle was the
 * largest part of a start (B6). A cache V8 cannot use (another Node, other flags, a rebuilt
 * file) is rejected by V8 itself and the file compiles from source, as `require` would.
 * (Node 22 has `module.enableCompileCache` for this; Node 20 does not.)
 */
const { readFileSync } = require("node:fs");
const Module = require("node:module");
const path = require("node:path");
const vm = require("node:vm");

const loaded = new Map();

function compile(file, useCache) {
  let cachedData;
  if (useCache) {
    try {
      cachedData = readFileSync(`${file}.cache`);
    } catch {
      cachedData = undefined;
    }
  }
  const dynamicImport = vm.constants?.USE_MAIN_CONTEXT_DEFAULT_LOADER;
  return new vm.Script(Module.wrap(readFileSync(file, "utf8")), {
    filename: file,
    ...(cachedData ? { cachedData } : {}),
    ...(dynamicImport ? { importModuleDynamically: dynamicImport } : {}),
  });
}

function run(script, file) {
  const module = { exports: {}, id: file, filename: file, loaded: false };
  const wrapper = script.runInThisContext();
  wrapper(module.exports, Module.createRequire(file), module, file, path.dirname(file));
  module.loaded = true;
  return module.exports;
}

/** The file's exports, evaluated once per process. */
function loadCached(file) {
  if (!loaded.has(file)) loaded.set(file, run(compile(file, true), file));
  return loaded.get(file);
}

/** For the build: evaluates the file once and gives the code cache of what that compiled. */
function codeCache(file) {
  const script = compile(file, false);
  run(script, file);
  return script.createCachedData();
}

module.exports = { loadCached, codeCache };
