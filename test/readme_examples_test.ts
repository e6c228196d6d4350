/** The README's TypeScript examples run as written (imports of 'tfjs-attention' resolve to this package). */
import {spawnSync} from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const root = path.resolve(__dirname, '..');
const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
const examples = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map(match => match[1]);

/** Imports stay on top; the rest runs inside an async function, so `await` works in CommonJS. */
function asScript(example: string): string {
  const lines = example.split('\n');
  const imports = lines.filter(line => line.startsWith('import '));
  const body = lines.filter(line => !line.startsWith('import '));
  return [...imports, '(async () => {', ...body, '})().catch(error => { console.error(error); process.exit(1); });'].join('\n');
}

describe('README examples', () => {
  it('has the examples the README promises (sequential, functional/cross, masks, save/load)', () => {
    expect(examples.length).toBeGreaterThanOrEqual(4);
  });

  it.each(examples.map((example, i) => [i + 1, example]))('example %i runs without error', (_, example) => {
    const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'readme-example-'));
    // Inside the package folder, so that 'tfjs-attention' resolves to this package (built by globalSetup).
    const file = path.join(root, `.tmp-readme-example-${process.pid}-${_}.ts`);
    fs.writeFileSync(file, asScript(example as string));
    try {
      const result = spawnSync(path.join(root, 'node_modules', '.bin', 'tsx'), [file], {
        cwd: folder, encoding: 'utf8', timeout: 120_000,
      });
      expect({status: result.status, stderr: result.stderr}).toEqual({status: 0, stderr: expect.any(String)});
      // A `console.log(...)  // expected` line in the README promises that output.
      const squeeze = (text: string) => text.replace(/\s+/g, '');
      for (const [, promised] of (example as string).matchAll(/console\.log\(.*\);\s*\/\/\s*(.+)$/gm)) {
        expect(squeeze(result.stdout)).toContain(squeeze(promised));
      }
    } finally {
      fs.rmSync(file, {force: true});
      fs.rmSync(folder, {recursive: true, force: true});
    }
  });
});

describe('README "Reuse the saved model" snippet', () => {
  const script = fs.readFileSync(path.join(root, 'scripts', 'reuse_saved_model.js'), 'utf8');

  it('is scripts/reuse_saved_model.js verbatim (below its two comment lines)', () => {
    const body = script.split('\n').slice(2).join('\n').trim();
    expect(readme).toContain(body);
  });

  it('runs with only @tensorflow/tfjs and tfjs-attention and names the cued sport first', () => {
    const result = spawnSync(process.execPath, ['scripts/reuse_saved_model.js', 'she takes her racket to the park to play'], {
      cwd: root, encoding: 'utf8', timeout: 120_000,
    });
    expect(result.status).toBe(0);
    const [word, probability] = result.stdout.trim().split('\n')[0].split(' ');
    expect(word).toBe('tennis');
    expect(Number(probability)).toBeGreaterThan(0.5);
  });
});
