/**
 * The demo's static server (scripts/demo.ts) never serves a file whose real path is outside
 * the folders it serves: a symbolic link under models/ to a file elsewhere is 404, as is one
 * in the page's folder (issue 9, finding 5). Links that stay inside are served. Runs on a
 * scratch page and models folder; no browser.
 */
import * as fs from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as path from 'path';
import {DemoServer, startDemoServer} from '../scripts/demo';

let tmp = '';
let server: DemoServer;
const SECRET = 'secret: not to be served\n';

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'demo-server-'));
  const demoDir = path.join(tmp, 'page');
  const modelsDir = path.join(tmp, 'models');
  const outside = path.join(tmp, 'outside');
  fs.mkdirSync(demoDir);
  fs.mkdirSync(path.join(modelsDir, 'park-play'), {recursive: true});
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(demoDir, 'index.html'), '<!doctype html><title>demo</title>');
  fs.writeFileSync(path.join(modelsDir, 'park-play', 'model.json'), '{"modelTopology": {}}');
  fs.writeFileSync(path.join(outside, 'secret.txt'), SECRET);
  // Links that lead out: to a file, to a folder, and from the page's folder.
  fs.symlinkSync(path.join(outside, 'secret.txt'), path.join(modelsDir, 'park-play', 'weights.bin'));
  fs.symlinkSync(outside, path.join(modelsDir, 'elsewhere'));
  fs.symlinkSync(path.join(outside, 'secret.txt'), path.join(demoDir, 'secret.txt'));
  fs.symlinkSync('/etc/passwd', path.join(modelsDir, 'passwd'));
  // Links that stay inside the served folders.
  fs.symlinkSync('model.json', path.join(modelsDir, 'park-play', 'alias.json'));
  fs.symlinkSync(path.join(demoDir, 'index.html'), path.join(modelsDir, 'page.html'));
  server = await startDemoServer({port: 0, demoDir, modelsDir});
});

afterAll(async () => {
  await server?.close();
  if (tmp) fs.rmSync(tmp, {recursive: true, force: true});
});

/** GET with the path sent as written (no URL normalization of `..`). */
function get(urlPath: string): Promise<{status: number; body: string}> {
  return new Promise((resolve, reject) => {
    http.get({host: '127.0.0.1', port: server.port, path: urlPath}, (response) => {
      let body = '';
      response.setEncoding('utf8').on('data', (d: string) => (body += d));
      response.on('end', () => resolve({status: response.statusCode ?? 0, body}));
    }).on('error', reject);
  });
}

describe('the demo server and symbolic links', () => {
  it.each([
    '/models/park-play/weights.bin',
    '/models/elsewhere/secret.txt',
    '/models/passwd',
    '/secret.txt',
  ])('%s, a link leading outside the served folders: 404, the file not served', async (urlPath) => {
    const response = await get(urlPath);
    expect(response.status).toBe(404);
    expect(response.body).not.toContain(SECRET.trim());
    expect(response.body).not.toContain('root:');
  });

  it('serves ordinary files and links that stay inside the served folders', async () => {
    expect(await get('/models/park-play/model.json')).toEqual({status: 200, body: '{"modelTopology": {}}'});
    expect(await get('/models/park-play/alias.json')).toEqual({status: 200, body: '{"modelTopology": {}}'});
    expect(await get('/models/page.html')).toEqual({status: 200, body: '<!doctype html><title>demo</title>'});
    expect((await get('/')).status).toBe(200);
  });

  it('keeps its path handling: .. stays inside (404 here), a NUL or bad encoding is 400, a missing file 404', async () => {
    const climbing = await get('/models/%2e%2e/outside/secret.txt');
    expect(climbing.status).toBe(404);
    expect(climbing.body).not.toContain(SECRET.trim());
    expect((await get('/models/a%00b')).status).toBe(400);
    expect((await get('/models/%E0%A4%A')).status).toBe(400);
    expect((await get('/models/park-play/nothing.bin')).status).toBe(404);
  });
});
