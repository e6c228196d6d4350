/**
 * npm run demo: bundles the browser demo (scripts/app/demo) with esbuild into dist/demo/ and serves
 * it, with the trained models under /models/, on localhost with Node's http module.
 *
 * The tests use `buildDemo` and `startDemoServer` directly (test/browser_test.ts).
 */
import * as fs from 'fs';
import * as http from 'http';
import * as net from 'net';
import * as path from 'path';
import * as esbuild from 'esbuild';
import {ParsedOptions, runCommand} from './app/cli/arguments';
import {ValueError} from './app/tfjs_attention_node';
import {packageRoot} from './app/package_root';

const ROOT = packageRoot();
/** Where the bundle goes: git-ignored through `dist/`. */
const DEFAULT_DEMO_DIR = path.join(ROOT, 'dist', 'demo');
/** What /models/ serves: the repo's models folder, so the page finds models/park-play. */
const DEFAULT_MODELS_DIR = path.join(ROOT, 'models');
const SOURCE_DIR = path.join(ROOT, 'scripts', 'app', 'demo');
const WASM_DIR = path.join(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist');

/**
 * Bundles scripts/app/demo/main.ts into `outDir`/main.js and copies index.html, style.css and the
 * tfjs-backend-wasm binaries (into `outDir`/wasm/, where the page's setWasmPaths points).
 * Returns `outDir`.
 */
export async function buildDemo(outDir: string = DEFAULT_DEMO_DIR): Promise<string> {
  fs.rmSync(outDir, {recursive: true, force: true});
  fs.mkdirSync(path.join(outDir, 'wasm'), {recursive: true});
  await esbuild.build({
    entryPoints: [path.join(SOURCE_DIR, 'main.ts')],
    outfile: path.join(outDir, 'main.js'),
    bundle: true,
    platform: 'browser',
    format: 'iife',
    target: 'es2020',
    minify: true,
    sourcemap: true,
    legalComments: 'none',
    logLevel: 'error',
    define: {'process.env.NODE_ENV': '"production"'},
  });
  for (const file of ['index.html', 'style.css']) {
    fs.copyFileSync(path.join(SOURCE_DIR, file), path.join(outDir, file));
  }
  for (const file of fs.readdirSync(WASM_DIR).filter(f => f.endsWith('.wasm'))) {
    fs.copyFileSync(path.join(WASM_DIR, file), path.join(outDir, 'wasm', file));
  }
  return outDir;
}

const CONTENT_TYPES: {[extension: string]: string} = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.bin': 'application/octet-stream',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.txt': 'text/plain; charset=utf-8',
};

function contentTypeOf(file: string): string {
  return CONTENT_TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
}

/**
 * The file that `urlPath` names under `root`, or null when it leaves `root` (`..`, encoded
 * or not), holds a NUL, or is not valid percent-encoding.
 */
function resolveUnder(root: string, urlPath: string): string|null {
  let decoded: string;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return null;
  }
  if (decoded.includes('\0') || decoded.includes('\\')) return null;
  const base = path.resolve(root);
  const resolved = path.resolve(base, `.${path.posix.normalize(`/${decoded}`)}`);
  return resolved === base || resolved.startsWith(base + path.sep) ? resolved : null;
}

function realpathOrSelf(folder: string): string {
  try {
    return fs.realpathSync(folder);
  } catch {
    return folder;
  }
}

export interface DemoServerOptions {
  /** 0 picks a free port. Defaults to 8080. */
  port?: number;
  /** Defaults to 127.0.0.1 (localhost only). */
  host?: string;
  /** The built page (see buildDemo). Defaults to dist/demo. */
  demoDir?: string;
  /** Served at /models/. Defaults to the repo's models folder. */
  modelsDir?: string;
}

export interface DemoServer {
  /** e.g. http://127.0.0.1:8080/ */
  url: string;
  port: number;
  close(): Promise<void>;
}

/**
 * Serves `demoDir` at / and `modelsDir` at /models/ (GET and HEAD only). Missing files and
 * folders are 404, paths that would leave the served folders are 400, and a symbolic link
 * whose real path is outside the served folders is 404.
 */
export function startDemoServer(options: DemoServerOptions = {}): Promise<DemoServer> {
  const demoDir = path.resolve(options.demoDir ?? DEFAULT_DEMO_DIR);
  const modelsDir = path.resolve(options.modelsDir ?? DEFAULT_MODELS_DIR);
  const host = options.host ?? '127.0.0.1';
  if (!fs.existsSync(path.join(demoDir, 'index.html'))) {
    return Promise.reject(new Error(`No demo build in ${demoDir}: run buildDemo() (npm run demo builds it).`));
  }
  /** Files are served only when their real path, symbolic links resolved, is under one of these. */
  const realRoots = [realpathOrSelf(demoDir), realpathOrSelf(modelsDir)];

  const server = http.createServer((request, response) => {
    const send = (status: number, body: string) => {
      response.writeHead(status, {'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store'});
      response.end(request.method === 'HEAD' ? undefined : `${body}\n`);
    };
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.setHeader('Allow', 'GET, HEAD');
      send(405, 'Method not allowed');
      return;
    }
    const pathname = (request.url ?? '/').split(/[?#]/)[0];
    let file: string|null;
    if (pathname === '/models' || pathname.startsWith('/models/')) {
      file = resolveUnder(modelsDir, pathname.slice('/models'.length));
    } else {
      file = resolveUnder(demoDir, pathname === '/' ? '/index.html' : pathname);
    }
    if (file == null) {
      send(400, 'Bad path');
      return;
    }
    const requested = file;
    const serve = (real: string) => fs.stat(real, (error, stats) => {
      if (error != null || !stats.isFile()) {
        send(404, `Not found: ${pathname}`);
        return;
      }
      response.writeHead(200, {
        'Content-Type': contentTypeOf(requested), 'Content-Length': stats.size, 'Cache-Control': 'no-store',
        'X-Content-Type-Options': 'nosniff',
      });
      if (request.method === 'HEAD') {
        response.end();
        return;
      }
      fs.createReadStream(real).on('error', () => response.destroy()).pipe(response);
    });
    fs.realpath(file, (realError, real) => {
      // A symbolic link that leads outside the served folders is as good as missing.
      if (realError != null || !realRoots.some(root => real.startsWith(root + path.sep))) {
        send(404, `Not found: ${pathname}`);
        return;
      }
      serve(real);
    });
  });

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 8080, host, () => {
      server.off('error', reject);
      const port = (server.address() as {port: number}).port;
      resolve({
        url: `http://${host.includes(':') ? `[${host}]` : host}:${port}/`,
        port,
        close: () => new Promise<void>((done) => {
          server.closeAllConnections();
          server.close(() => done());
        }),
      });
    });
  });
}

function portInUse(port: number, host: string, built = false): ValueError {
  return new ValueError(
      `Port ${port} on ${host} is in use (another \`npm run demo\`?), so the page was ${built ? '' : 'not built or '}served. ` +
      'Stop that server, or pick another port with `--port N` (`--port 0` picks a free one).');
}

/**
 * Resolves when `port` on `host` can be listened on (0 always can), by listening and closing
 * at once; otherwise rejects with a message naming the port, before anything is built.
 */
export function checkPortFree(port: number, host: string): Promise<void> {
  if (port === 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', (error: NodeJS.ErrnoException) => {
      reject(error.code === 'EADDRINUSE' ? portInUse(port, host) :
          new ValueError(`Cannot listen on port ${port} on ${host}: ${error.code ?? error.message}. Received: --port ${port} --host ${host}`));
    });
    probe.listen(port, host, () => probe.close(() => resolve()));
  });
}

const OPTIONS = {
  port: {type: 'integer', min: 0, max: 65535, help: 'Port to listen on; 0 picks a free one (default: 8080).'},
  host: {type: 'string', help: 'Address to listen on (default: 127.0.0.1).'},
  models: {type: 'string', help: 'Folder served at /models/; the page loads park-play/ in it (default: models).'},
} as const;

async function main(options: ParsedOptions, _: string): Promise<void> {
  const port = (options.port as number|undefined) ?? 8080;
  const host = (options.host as string|undefined) ?? '127.0.0.1';
  const modelsDir = path.resolve((options.models as string|undefined) ?? DEFAULT_MODELS_DIR);

  // Before the bundle is touched: a demo already serving on this port serves dist/demo too.
  await checkPortFree(port, host);
  const started = Date.now();
  const demoDir = await buildDemo();
  console.log(`Built the page into ${path.relative(process.cwd(), demoDir) || demoDir} in ${Date.now() - started} ms.`);
  if (!fs.existsSync(path.join(modelsDir, 'park-play', 'model.json'))) {
    console.warn(
        `Warning: ${path.join(modelsDir, 'park-play', 'model.json')} does not exist; the page will say "model not found". ` +
        'Train one with `npm run train`.');
  }
  const server = await startDemoServer({port, host, modelsDir}).catch((error: NodeJS.ErrnoException) => {
    throw error.code === 'EADDRINUSE' ? portInUse(port, host, true) : error;  // taken since the check
  });
  console.log(`Serving the demo at ${server.url} (models from ${modelsDir}). Press Ctrl+C to stop.`);
  const stop = () => {
    void server.close().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

if (require.main === module) {
  runCommand({command: 'npm run demo -- [options]', options: OPTIONS, takesSentence: false}, main);
}
