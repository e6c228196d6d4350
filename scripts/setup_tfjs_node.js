/**
 * `npm run setup:tfjs-node`: installs @tensorflow/tfjs-node without internet access, building its native
 * binding against the TensorFlow C library of a TensorFlow wheel (pip's configured index, a wheel file or an
 * unpacked tensorflow folder), for air-gapped machines and CI. With internet access, a plain
 * `npm install @tensorflow/tfjs-node` is the normal way.
 *
 *   npm run setup:tfjs-node [-- --wheel FILE.whl | --tensorflow-dir DIR | --tensorflow-version SPEC] [--force]
 *
 * Steps (each skipped when already done; re-run it after `npm install` / `npm ci`, which remove the link):
 *  1. tfjs-node (the version of the repo's @tensorflow/tfjs) into the git-ignored prefix `.tfjs-node/`, with its
 *     install script off (it downloads libtensorflow); its own copies of @tensorflow/* are removed, so that it
 *     resolves the repo's @tensorflow/tfjs: one engine, one registry of backends and IO routers;
 *  2. the C library and headers of the wheel into tfjs-node's deps/lib and deps/include, under the names its
 *     build links against and its install script checks;
 *  3. the binding compiled by node-pre-gyp (node-gyp, with the Node headers of this machine), log in
 *     `.tfjs-node/build.log`;
 *  4. node_modules/@tensorflow/tfjs-node linked to the prefix's copy; then a child Node process loads it and
 *     checks that the backend is `tensorflow` and that a matMul gives the right numbers.
 * Plain Node (no tsx), so that it runs right after `npm ci`. Linux only (the wheel's .so files).
 */
'use strict';
const {spawnSync} = require('child_process');
const fs = require('fs');
const path = require('path');

const USAGE = 'Usage: npm run setup:tfjs-node [-- --wheel FILE.whl | --tensorflow-dir DIR | ' +
    '--tensorflow-version SPEC] [--nodedir DIR] [--force] [--root DIR]';
const DEFAULT_TENSORFLOW_VERSION = '2.21.*';
/** The library files the binding links against, as the wheel names them (under tensorflow/). */
const LIBRARIES = ['libtensorflow_cc.so.2', 'libtensorflow_framework.so.2'];
/** Links in deps/lib: the names binding.gyp links (-ltensorflow -ltensorflow_framework) and the one install.js checks. */
const LINKS = {
  'libtensorflow.so': 'libtensorflow_cc.so.2',
  'libtensorflow_framework.so': 'libtensorflow_framework.so.2',
  'libtensorflow.so.2.9.1': 'libtensorflow_cc.so.2',
};
/** The header folders (relative to the wheel's tensorflow/include/) that the binding's sources include. */
const HEADER_PREFIXES = ['tensorflow/c/', 'tensorflow/core/platform/', 'tsl/', 'xla/tsl/c/'];

/** An error whose message says what is missing and how to get it; printed without a stack. */
class SetupError extends Error {}

function parseArgs(argv) {
  const options = {wheel: null, tensorflowDir: null, tensorflowVersion: DEFAULT_TENSORFLOW_VERSION, nodedir: null,
                   force: false, root: path.resolve(__dirname, '..')};
  const valued = {'--wheel': 'wheel', '--tensorflow-dir': 'tensorflowDir', '--tensorflow-version': 'tensorflowVersion',
                  '--nodedir': 'nodedir', '--root': 'root'};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const [flag, inline] = arg.startsWith('--') && arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, null];
    if (flag === '--force' && inline == null) {
      options.force = true;
    } else if (flag === '--help' || flag === '-h') {
      options.help = true;
    } else if (flag in valued) {
      const value = inline ?? argv[++i];
      if (value == null || value === '' || (inline == null && value.startsWith('--'))) {
        throw new SetupError(`${flag} needs a value. Received: ${JSON.stringify(arg)} with nothing after it.\n${USAGE}`);
      }
      options[valued[flag]] = value;
    } else {
      throw new SetupError(`Unknown argument ${JSON.stringify(arg)}.\n${USAGE}`);
    }
  }
  if (options.wheel != null && options.tensorflowDir != null) {
    throw new SetupError('Give --wheel or --tensorflow-dir, not both.');
  }
  for (const key of ['wheel', 'tensorflowDir', 'nodedir', 'root']) {
    if (options[key] != null) options[key] = path.resolve(options[key]);
  }
  return options;
}

function log(message) {
  process.stdout.write(`setup:tfjs-node: ${message}\n`);
}

/** The full path of `command` on PATH, or null. */
function which(command) {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir === '') continue;
    const file = path.join(dir, command);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      if (fs.statSync(file).isFile()) return file;
    } catch {
      // not here
    }
  }
  return null;
}

function tail(text, lines = 30) {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

function run(command, args, options = {}) {
  const result = spawnSync(command, args, {encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, ...options});
  return {status: result.status, error: result.error, output: `${result.stdout ?? ''}${result.stderr ?? ''}`};
}

/** The version of the repo's installed @tensorflow/tfjs, which tfjs-node must match. */
function tfjsVersion(root) {
  const file = path.join(root, 'node_modules', '@tensorflow', 'tfjs', 'package.json');
  if (!fs.existsSync(file)) {
    throw new SetupError(`${file} not found: install the project's packages first (npm ci), then run this again.`);
  }
  return JSON.parse(fs.readFileSync(file, 'utf8')).version;
}

/**
 * Loads tfjs-node from `root` in a child Node process and runs a matMul; returns null when all is well, else
 * what went wrong (the child's output).
 */
function checkBackend(root) {
  const probe = [
    "const tf = require('@tensorflow/tfjs-node');",
    "const y = Array.from(tf.matMul(tf.tensor2d([[1, 2], [3, 4]]), tf.tensor2d([[5], [6]])).dataSync());",
    "const same = require('@tensorflow/tfjs').getBackend();",
    "console.log('\\nRESULT ' + JSON.stringify({backend: tf.getBackend(), same, y}));",
  ].join('\n');
  const result = run(process.execPath, ['-e', probe], {cwd: root});
  const line = result.output.split('\n').find(l => l.startsWith('RESULT '));
  if (result.status !== 0 || line == null) return `loading it failed (status ${result.status}):\n${tail(result.output)}`;
  const report = JSON.parse(line.slice('RESULT '.length));
  // [[1, 2], [3, 4]] · [[5], [6]] = [[17], [39]]
  if (report.backend !== 'tensorflow' || report.same !== 'tensorflow' || report.y.join() !== '17,39') {
    return `it loaded but does not work: backend ${report.backend} (the repo's @tensorflow/tfjs sees ${report.same}), ` +
        `[[1, 2], [3, 4]]·[[5], [6]] gave [${report.y}] instead of [17, 39]`;
  }
  return null;
}

/** node_modules/@tensorflow/tfjs-node -> ../../.tfjs-node/node_modules/@tensorflow/tfjs-node. */
function link(root, options) {
  const linkPath = path.join(root, 'node_modules', '@tensorflow', 'tfjs-node');
  const target = path.join('..', '..', '.tfjs-node', 'node_modules', '@tensorflow', 'tfjs-node');
  let stat = null;
  try {
    stat = fs.lstatSync(linkPath);
  } catch {
    // absent
  }
  if (stat != null && stat.isSymbolicLink() && fs.readlinkSync(linkPath) === target) return;
  if (stat != null && !stat.isSymbolicLink()) {
    if (!options.force) {
      throw new SetupError(`${linkPath} exists and is not this script's link (an npm install of tfjs-node that does ` +
          'not load?): remove it, or pass --force to replace it.');
    }
    fs.rmSync(linkPath, {recursive: true, force: true});
  } else if (stat != null) {
    fs.unlinkSync(linkPath);
  }
  fs.symlinkSync(target, linkPath, 'dir');
}

/** The folder of Node's headers for node-gyp (it would download them otherwise). */
function nodeHeaders(options) {
  const candidates = options.nodedir != null ? [options.nodedir] :
      [process.env.npm_config_nodedir, path.dirname(path.dirname(process.execPath))].filter(Boolean);
  for (const dir of candidates) {
    if (fs.existsSync(path.join(dir, 'include', 'node', 'node_api.h'))) return dir;
  }
  throw new SetupError(`Node's C headers were not found (looked for include/node/node_api.h under ` +
      `${candidates.join(', ')}); node-gyp needs them to build the binding. Install them (Debian: ` +
      '`apt-get install libnode-dev`, or use a Node from nodejs.org, which ships include/), or pass --nodedir DIR.');
}

function checkTools() {
  if (process.platform !== 'linux') {
    throw new SetupError(`This script builds against the Linux TensorFlow wheel; this is ${process.platform}. ` +
        'Install tfjs-node with `npm install @tensorflow/tfjs-node` instead.');
  }
  const missing = ['make', 'g++', 'python3'].filter(tool => which(tool) == null);
  if (missing.length > 0) {
    throw new SetupError(`${missing.join(', ')} not found on PATH: node-gyp needs make, g++ and python3 to compile ` +
        "tfjs-node's binding. Install them (Debian/Ubuntu: `apt-get install make g++ python3`).");
  }
}

/** Runs Python's zipfile on the wheel: 'list' says which needed members it has, 'extract' writes them. */
function wheelMembers(wheel, mode, libDir, includeDir) {
  const code = `
import json, os, shutil, sys, zipfile
mode, wheel, lib_dir, include_dir = sys.argv[1:5]
libs = ${JSON.stringify(LIBRARIES)}
prefixes = ${JSON.stringify(HEADER_PREFIXES)}
found = {'libs': [], 'headers': 0}
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        name = info.filename
        if name.endswith('/'):
            continue
        if name.startswith('tensorflow/') and name[len('tensorflow/'):] in libs:
            found['libs'].append(name[len('tensorflow/'):])
            dest = os.path.join(lib_dir, name[len('tensorflow/'):])
        elif name.startswith('tensorflow/include/') and any(name[len('tensorflow/include/'):].startswith(p) for p in prefixes):
            found['headers'] += 1
            dest = os.path.join(include_dir, name[len('tensorflow/include/'):])
        else:
            continue
        if mode == 'extract':
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with z.open(info) as src, open(dest + '.part', 'wb') as out:
                shutil.copyfileobj(src, out, 1 << 20)
            os.replace(dest + '.part', dest)
print(json.dumps(found))
`;
  const result = run('python3', ['-c', code, mode, wheel, libDir ?? '', includeDir ?? '']);
  if (result.status !== 0) {
    throw new SetupError(`Cannot read ${wheel} as a wheel (a zip file): ${tail(result.output, 5)}`);
  }
  return JSON.parse(result.output.trim().split('\n').pop());
}

/** The TensorFlow to build against: {kind: 'wheel', file} or {kind: 'dir', dir}, checked to hold the C library. */
function tensorflowSource(options) {
  if (options.tensorflowDir != null) {
    const dir = options.tensorflowDir;
    const missing = [...LIBRARIES, path.join('include', 'tensorflow', 'c', 'c_api.h')]
        .filter(name => !fs.existsSync(path.join(dir, name)));
    if (missing.length > 0) {
      throw new SetupError(`--tensorflow-dir ${dir} lacks ${missing.join(', ')}: pass the folder of an installed ` +
          "tensorflow (or tensorflow-cpu) 2.x package, e.g. the output of `python3 -c 'import tensorflow, os; " +
          "print(os.path.dirname(tensorflow.__file__))'`.");
    }
    return {kind: 'dir', dir};
  }
  let wheel = options.wheel;
  if (wheel == null) wheel = downloadWheel(options);
  if (!fs.existsSync(wheel)) throw new SetupError(`--wheel ${wheel} does not exist.`);
  const found = wheelMembers(wheel, 'list');
  const missing = LIBRARIES.filter(name => !found.libs.includes(name));
  if (missing.length > 0 || found.headers === 0) {
    throw new SetupError(`${wheel} lacks ${[...missing.map(name => `tensorflow/${name}`),
      ...(found.headers === 0 ? ['the C headers (tensorflow/include/tensorflow/c/)'] : [])].join(', ')}: it is not a ` +
      'TensorFlow 2.x wheel for Linux with the C library. Use tensorflow-cpu (or tensorflow) 2.x for Linux x86_64.');
  }
  return {kind: 'wheel', file: wheel};
}

/** Downloads the tensorflow-cpu wheel with pip (from its configured index) into .tfjs-node/wheels, once. */
function downloadWheel(options) {
  const cache = path.join(options.root, '.tfjs-node', 'wheels');
  const spec = `tensorflow-cpu==${options.tensorflowVersion}`;
  const pip = run('python3', ['-m', 'pip', '--version']);
  if (pip.status !== 0) {
    throw new SetupError('pip is not available (`python3 -m pip --version` failed): install it (Debian: ' +
        '`apt-get install python3-pip`), or pass --wheel FILE.whl or --tensorflow-dir DIR.\n' + tail(pip.output, 5));
  }
  fs.mkdirSync(cache, {recursive: true});
  log(`downloading ${spec} with pip into ${cache}`);
  const result = run('python3', ['-m', 'pip', 'download', '--no-deps', '--retries', '0', '--timeout', '5',
                                 '--only-binary', ':all:', '-d', cache, spec]);
  const wheels = fs.readdirSync(cache).filter(name => /^tensorflow_cpu-.*\.whl$/.test(name));
  const saved = result.output.match(/(?:Saved|File was already downloaded) (\S+\.whl)/);
  if (result.status !== 0 || (saved == null && wheels.length === 0)) {
    throw new SetupError(`pip could not get ${spec} (status ${result.status}). Give pip an index that has it ` +
        '(pip config / PIP_INDEX_URL), or pass --wheel FILE.whl or --tensorflow-dir DIR.\n' + tail(result.output, 10));
  }
  return saved != null ? path.resolve(saved[1]) : path.join(cache, wheels.sort().pop());
}

/** tfjs-node at `version` into .tfjs-node/, install script off, its own @tensorflow/* removed. */
function installPackage(root, version) {
  const prefix = path.join(root, '.tfjs-node');
  const packageDir = path.join(prefix, 'node_modules', '@tensorflow', 'tfjs-node');
  const installed = path.join(packageDir, 'package.json');
  if (!fs.existsSync(installed) || JSON.parse(fs.readFileSync(installed, 'utf8')).version !== version) {
    fs.mkdirSync(prefix, {recursive: true});
    if (!fs.existsSync(path.join(prefix, 'package.json'))) {
      fs.writeFileSync(path.join(prefix, 'package.json'), '{"private": true}\n');
    }
    log(`installing @tensorflow/tfjs-node@${version} into ${prefix} (install script off)`);
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
    const result = run(npm, ['install', '--ignore-scripts', '--no-audit', '--no-fund', `@tensorflow/tfjs-node@${version}`],
                        {cwd: prefix});
    if (result.status !== 0 || !fs.existsSync(installed)) {
      throw new SetupError(`npm could not install @tensorflow/tfjs-node@${version} into ${prefix} (status ` +
          `${result.status}); it needs the npm registry (or a cache with it):\n${tail(result.output, 15)}`);
    }
  }
  // One @tensorflow/tfjs in the process: tfjs-node must resolve the repo's, not a copy of its own.
  const scope = path.join(prefix, 'node_modules', '@tensorflow');
  for (const name of fs.readdirSync(scope)) {
    if (name !== 'tfjs-node') fs.rmSync(path.join(scope, name), {recursive: true, force: true});
  }
  return packageDir;
}

/** deps/lib and deps/include of tfjs-node, from the wheel or folder. */
function layOutLibrary(packageDir, source) {
  const lib = path.join(packageDir, 'deps', 'lib');
  const include = path.join(packageDir, 'deps', 'include');
  fs.rmSync(path.join(packageDir, 'deps'), {recursive: true, force: true});
  fs.mkdirSync(lib, {recursive: true});
  fs.mkdirSync(include, {recursive: true});
  if (source.kind === 'wheel') {
    log(`extracting the C library and headers from ${source.file}`);
    wheelMembers(source.file, 'extract', lib, include);
  } else {
    log(`copying the C library and headers from ${source.dir}`);
    for (const name of LIBRARIES) fs.copyFileSync(path.join(source.dir, name), path.join(lib, name));
    for (const prefix of HEADER_PREFIXES) {
      const from = path.join(source.dir, 'include', prefix);
      if (fs.existsSync(from)) fs.cpSync(from, path.join(include, prefix), {recursive: true});
    }
  }
  for (const [name, target] of Object.entries(LINKS)) fs.symlinkSync(target, path.join(lib, name));
}

/** Compiles the binding with node-pre-gyp (its prebuilt download is skipped); the log goes to .tfjs-node/build.log. */
function build(root, packageDir, nodedir) {
  const logFile = path.join(root, '.tfjs-node', 'build.log');
  const nodePreGyp = path.join(root, '.tfjs-node', 'node_modules', '@mapbox', 'node-pre-gyp', 'bin', 'node-pre-gyp');
  const npmRoot = run(process.platform === 'win32' ? 'npm.cmd' : 'npm', ['root', '-g']).output.trim().split('\n').pop();
  const nodeGyp = [process.env.npm_config_node_gyp, path.join(npmRoot, 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
                   path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js')]
      .find(file => file && fs.existsSync(file));
  if (nodeGyp == null) {
    throw new SetupError(`npm's bundled node-gyp was not found (looked under ${npmRoot}/npm/node_modules/node-gyp): ` +
        'install node-gyp (`npm install -g node-gyp`) and set npm_config_node_gyp to its bin/node-gyp.js.');
  }
  log('building the binding (node-pre-gyp, node-gyp)');
  const started = Date.now();
  const result = run(process.execPath, [nodePreGyp, 'install', '--build-from-source', `--nodedir=${nodedir}`], {
    cwd: packageDir,
    env: {...process.env, npm_config_nodedir: nodedir, npm_config_node_gyp: nodeGyp},
  });
  fs.writeFileSync(logFile, result.output);
  if (result.status !== 0) {
    throw new SetupError(`Building tfjs-node's binding failed (status ${result.status}); the end of ${logFile}:\n` +
        tail(result.output, 40));
  }
  log(`built in ${((Date.now() - started) / 1000).toFixed(1)} s (log: ${logFile})`);
}

function main(argv) {
  const options = parseArgs(argv);
  if (options.help) {
    log(USAGE);
    return;
  }
  const root = options.root;
  const version = tfjsVersion(root);
  const packageDir = path.join(root, '.tfjs-node', 'node_modules', '@tensorflow', 'tfjs-node');
  const linkPath = path.join(root, 'node_modules', '@tensorflow', 'tfjs-node');
  if (!options.force) {
    // Already set up (or installed by npm): only the link may be missing, after `npm ci`.
    let ready = false;
    if (fs.existsSync(linkPath) && !fs.lstatSync(linkPath).isSymbolicLink()) {
      ready = checkBackend(root) == null;
    } else if (fs.existsSync(path.join(packageDir, 'package.json')) &&
               JSON.parse(fs.readFileSync(path.join(packageDir, 'package.json'), 'utf8')).version === version) {
      link(root, options);
      ready = checkBackend(root) == null;
      // Not built (or broken): no link to it until it works.
      if (!ready) fs.unlinkSync(linkPath);
    }
    if (ready) {
      log('@tensorflow/tfjs-node is installed and loads: nothing to do (--force rebuilds it)');
      return;
    }
  }
  checkTools();
  const nodedir = nodeHeaders(options);
  const source = tensorflowSource(options);
  const started = Date.now();
  const dir = installPackage(root, version);
  layOutLibrary(dir, source);
  build(root, dir, nodedir);
  link(root, options);
  const problem = checkBackend(root);
  if (problem != null) throw new SetupError(`@tensorflow/tfjs-node was built, but ${problem}`);
  log(`@tensorflow/tfjs-node ${version} works: backend tensorflow, matMul checked (${((Date.now() - started) / 1000).toFixed(1)} s)`);
}

try {
  main(process.argv.slice(2));
} catch (error) {
  if (!(error instanceof SetupError)) throw error;
  process.stderr.write(`setup:tfjs-node: ${error.message}\n`);
  process.exit(1);
}
