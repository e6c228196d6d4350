/**
 * The import graph of TypeScript sources, parsed (not grepped) with the TypeScript compiler:
 * `import`, `export … from`, `import x = require()`, `require('…')` and `import('…')`. Strings
 * and comments that merely mention a module (e.g. the worker's source text in
 * src/backend/attention_threads.ts) are not imports. test/package_layout_test.ts walks it.
 */
import * as fs from 'fs';
import {builtinModules} from 'module';
import * as path from 'path';
import * as ts from 'typescript';

/** One import of a file: the specifier as written and, for a relative one, the file it resolves to. */
export interface ImportEdge {
  from: string;
  specifier: string;
  /** The .ts file a relative specifier resolves to; null for a package or built-in, or when unresolved. */
  resolved: string|null;
  /** `import(x)` or `require(x)` with a non-literal x: what it loads cannot be known statically. */
  dynamic: boolean;
}

const BUILTINS = new Set(builtinModules);

/** Whether `specifier` names a Node built-in module (`fs`, `node:fs`, `fs/promises`, ...). */
export function isNodeBuiltin(specifier: string): boolean {
  if (specifier.startsWith('node:')) return true;
  return BUILTINS.has(specifier) || BUILTINS.has(specifier.split('/')[0]);
}

/** The package a bare specifier names: `@scope/name` or `name`. */
export function packageName(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

function resolveRelative(from: string, specifier: string): string|null {
  const base = path.resolve(path.dirname(from), specifier);
  for (const candidate of [base, `${base}.ts`, `${base}.tsx`, path.join(base, 'index.ts')]) {
    if (candidate.endsWith('.ts') && fs.existsSync(candidate) && fs.statSync(candidate).isFile()) return candidate;
  }
  return null;
}

/** Every import of the TypeScript file `file`. */
export function importsOf(file: string): ImportEdge[] {
  const source = ts.createSourceFile(file, fs.readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const edges: ImportEdge[] = [];
  const add = (node: ts.Node|undefined) => {
    if (node == null) return;
    if (!ts.isStringLiteralLike(node)) {
      edges.push({from: file, specifier: node.getText(source), resolved: null, dynamic: true});
      return;
    }
    const specifier = node.text;
    const resolved = specifier.startsWith('.') ? resolveRelative(file, specifier) : null;
    edges.push({from: file, specifier, resolved, dynamic: false});
  };
  const visit = (node: ts.Node) => {
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) {
      add(node.moduleSpecifier);
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      add(node.moduleReference.expression);
    } else if (ts.isCallExpression(node) &&
               (node.expression.kind === ts.SyntaxKind.ImportKeyword ||
                ts.isIdentifier(node.expression) && node.expression.text === 'require' ||
                ts.isPropertyAccessExpression(node.expression) && node.expression.name.text === 'require')) {
      add(node.arguments[0]);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return edges;
}

/** The files reachable from `entries` through relative imports, and every import edge of those files. */
export function reachableFrom(entries: string[]): {files: Set<string>; edges: ImportEdge[]} {
  const files = new Set<string>();
  const edges: ImportEdge[] = [];
  const queue = [...entries];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (files.has(file)) continue;
    files.add(file);
    for (const edge of importsOf(file)) {
      edges.push(edge);
      if (edge.resolved != null) queue.push(edge.resolved);
    }
  }
  return {files, edges};
}

/** Every .ts file under `dir`. */
export function tsFilesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(dir, {withFileTypes: true})) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...tsFilesUnder(full));
    else if (entry.name.endsWith('.ts')) out.push(full);
  }
  return out.sort();
}

/** Whether `file` lies inside folder `dir`. */
export function isInside(file: string, dir: string): boolean {
  const rel = path.relative(dir, file);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}

/** An entry of the package: its file under src/, whether browsers load it, and the packages its files may import. */
export interface LibraryEntry {
  file: string;
  browserSafe: boolean;
  packages: string[];
}

/**
 * The package's entries (package.json's `exports`): the main entry and tfjs-attention/keras,
 * each browser-safe with a Node twin. Only the Keras entries reach the zip and HDF5 libraries,
 * so that an app that never opens a Keras file does not bundle them.
 */
export const LIBRARY_ENTRIES: LibraryEntry[] = [
  {file: 'index.ts', browserSafe: true, packages: ['@tensorflow/tfjs']},
  {file: 'node.ts', browserSafe: false, packages: ['@tensorflow/tfjs']},
  {file: 'keras.ts', browserSafe: true, packages: ['@tensorflow/tfjs', 'fflate', 'h5wasm']},
  {file: 'keras_node.ts', browserSafe: false, packages: ['@tensorflow/tfjs', 'fflate', 'h5wasm']},
];

/**
 * The rules of the library's layout, checked on the tree at `root` (a repository, or a small
 * one that a test builds to see the rules fail). Returns one line per violation; [] is clean.
 *  1. A file reachable from a browser-safe entry imports no Node built-in, nothing outside
 *     src/, and nothing it cannot name statically.
 *  2. A file reachable from an entry imports no package but the entry's `packages` (and, from a
 *     Node entry, Node built-ins).
 *  3. No file under src/ imports from outside src/ (scripts/, test/) or fails to resolve.
 *  4. Every file under src/ is reachable from an entry (no leftover app code).
 */
export function libraryViolations(root: string, entries: LibraryEntry[] = LIBRARY_ENTRIES): string[] {
  const src = path.join(root, 'src');
  const rel = (file: string) => path.relative(root, file);
  const problems = new Set<string>();
  const present = entries.filter(entry => {
    const exists = fs.existsSync(path.join(src, entry.file));
    if (!exists) problems.add(`src/${entry.file}, an entry of the package, is missing`);
    return exists;
  });
  for (const entry of present) {
    for (const edge of reachableFrom([path.join(src, entry.file)]).edges) {
      const where = `${rel(edge.from)} (reachable from src/${entry.file}) imports`;
      if (edge.dynamic) {
        if (entry.browserSafe) problems.add(`${where} a module it names at run time: ${edge.specifier}`);
      } else if (isNodeBuiltin(edge.specifier)) {
        if (entry.browserSafe) problems.add(`${where} the Node built-in "${edge.specifier}"`);
      } else if (!edge.specifier.startsWith('.') && !entry.packages.includes(packageName(edge.specifier))) {
        problems.add(`${where} the package "${edge.specifier}"`);
      }
    }
  }
  const all = tsFilesUnder(src);
  for (const file of all) {
    for (const edge of importsOf(file)) {
      if (edge.dynamic || !edge.specifier.startsWith('.')) continue;
      const where = `${rel(file)} imports`;
      if (edge.resolved == null) problems.add(`${where} "${edge.specifier}", which resolves to no .ts file`);
      else if (!isInside(edge.resolved, src)) problems.add(`${where} "${edge.specifier}", outside src/: ${rel(edge.resolved)}`);
    }
  }
  const reachable = reachableFrom(present.map(entry => path.join(src, entry.file))).files;
  for (const file of all) {
    if (!reachable.has(file)) problems.add(`${rel(file)} is reachable from no entry (${entries.map(e => `src/${e.file}`).join(', ')})`);
  }
  return [...problems];
}

/** The files through which the example app (scripts/) reaches the library (src/). */
export const APP_LIBRARY_PATHS = ['scripts/app/tfjs_attention.ts', 'scripts/app/tfjs_attention_node.ts'];

/**
 * The rules of the example app at `root`: a file under scripts/ reaches src/ only through
 * APP_LIBRARY_PATHS, and the demo page (scripts/app/demo/main.ts, bundled for browsers) reaches
 * no Node built-in and not the Node entry. Returns one line per violation.
 */
export function appViolations(root: string): string[] {
  const src = path.join(root, 'src');
  const rel = (file: string) => path.relative(root, file);
  const gates = new Set(APP_LIBRARY_PATHS.map(file => path.join(root, file)));
  const problems: string[] = [];
  for (const file of tsFilesUnder(path.join(root, 'scripts'))) {
    for (const edge of importsOf(file)) {
      if (edge.specifier.startsWith('.') && edge.resolved == null) {
        problems.push(`${rel(file)} imports "${edge.specifier}", which resolves to no .ts file`);
      } else if (edge.resolved != null && isInside(edge.resolved, src) && !gates.has(file)) {
        problems.push(`${rel(file)} imports the library's ${rel(edge.resolved)} directly, not through ${APP_LIBRARY_PATHS.join(' or ')}`);
      }
    }
  }
  const demoMain = path.join(root, 'scripts', 'app', 'demo', 'main.ts');
  if (!fs.existsSync(demoMain)) return [...problems, 'scripts/app/demo/main.ts, the demo page, is missing'];
  const demo = reachableFrom([demoMain]);
  for (const edge of demo.edges) {
    if (isNodeBuiltin(edge.specifier)) problems.push(`${rel(edge.from)} (in the demo page) imports the Node built-in "${edge.specifier}"`);
  }
  if (demo.files.has(path.join(src, 'node.ts'))) problems.push('the demo page reaches src/node.ts, the Node entry');
  return problems;
}
