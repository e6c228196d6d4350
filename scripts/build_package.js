/**
 * `npm run build`: the library's two builds, from src/ (the app under scripts/ is not part of it).
 *  - dist/cjs: CommonJS from tsc (tsconfig.build.json), one file per source, with .d.ts types;
 *  - dist/esm: ES modules from esbuild, the entries index and keras (browser-safe), node and
 *    keras_node, bundled with code splitting, so that the entries share one copy of the library
 *    (chunks) and every dependency stays an import; dist/esm/package.json marks the folder
 *    "type": "module", and dist/esm/<entry>.d.ts re-export the declarations of dist/cjs.
 * Old outputs are removed first, so that nothing stale is packed.
 */
const {spawnSync} = require('child_process');
const fs = require('fs');
const {builtinModules} = require('module');
const path = require('path');

const ROOT = path.resolve(__dirname, '..');
const DIST = path.join(ROOT, 'dist');
const ENTRIES = ['index', 'node', 'keras', 'keras_node'];

function main() {
  for (const dir of ['cjs', 'esm', 'src']) fs.rmSync(path.join(DIST, dir), {recursive: true, force: true});

  const tsc = spawnSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.build.json'],
                        {cwd: ROOT, stdio: 'inherit'});
  if (tsc.status !== 0) process.exit(tsc.status ?? 1);

  require('esbuild').buildSync({
    absWorkingDir: ROOT,
    entryPoints: ENTRIES.map(name => `src/${name}.ts`),
    outdir: 'dist/esm',
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'neutral',
    target: 'es2020',
    chunkNames: 'chunk-[hash]',
    // src/keras/hdf5_library.ts keeps a literal import('h5wasm') for bundlers in this build only.
    define: {TFJS_ATTENTION_ESM_BUILD: 'true'},
    keepNames: true,  // classes keep their names (ValueError, not _ValueError)
    // Dependencies and peers are the app's own (one tfjs instance); Node built-ins stay imports (node and keras_node only).
    external: ['@tensorflow/*', 'fflate', 'h5wasm', ...builtinModules, 'node:*'],
    logLevel: 'warning',
  });
  fs.writeFileSync(path.join(DIST, 'esm', 'package.json'), `${JSON.stringify({type: 'module'}, null, 2)}\n`);
  for (const name of ENTRIES) {
    fs.writeFileSync(path.join(DIST, 'esm', `${name}.d.ts`), `export * from '../cjs/${name}.js';\n`);
  }
}

main();
