/**
 * The HDF5 library for Keras' `model.weights.h5`: h5wasm (HDF5 compiled to WebAssembly, with
 * its binary embedded; it reads and writes), loaded on first use so that only code that opens a
 * `.keras` archive pays for it, and never the main entry (test/package_layout_test.ts checks).
 *
 * h5wasm is an ES module only. The ES build (dist/esm, for bundlers and Node's `import`)
 * keeps a literal `import('h5wasm')` that bundlers follow; tsc's CommonJS output would turn
 * `import()` into `require()`, which cannot load an ES module, so the CommonJS build (and the
 * tests) import it through Node's own dynamic import instead.
 */
import type * as H5wasm from 'h5wasm';

export type H5Module = typeof H5wasm;

/** Defined (true) by scripts/build_package.js in the ES build only. */
declare const TFJS_ATTENTION_ESM_BUILD: boolean|undefined;

/**
 * Node's dynamic import, out of tsc's reach (it would rewrite an `import()` to `require()`). Its
 * source is unique to this module instance: V8 caches compiled code by source, and a cached
 * function keeps the dynamic-import handler of the module that compiled it first, so in a process
 * that evaluates this module more than once (Jest runs test files one after another in a worker,
 * each with its own module registry) an identical source would import through a torn-down one.
 */
const importModule = new Function(
    'specifier', `return import(specifier); // ${Date.now()}-${Math.random()}`) as (specifier: string) => Promise<unknown>;

let loading: Promise<H5Module>|null = null;

/** h5wasm, ready to open files in its in-memory file system (`h5.FS`). */
export function loadHdf5(): Promise<H5Module> {
  if (loading == null) {
    const imported: Promise<H5Module> = typeof TFJS_ATTENTION_ESM_BUILD !== 'undefined' ?
        import('h5wasm') :
        importModule('h5wasm') as Promise<H5Module>;
    loading = imported.then(async (h5) => {
      await h5.ready;
      return h5;
    });
    loading.catch(() => {
      loading = null;  // a failed import is retried by the next call, not cached
    });
  }
  return loading;
}
