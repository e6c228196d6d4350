/** The README's TypeScript examples run as written (imports of 'tfjs-attention' resolve to this package). */
import {spawnSync} from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

const root = path.resolve(__dirname, '..');
const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
const examples = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map(match => match[1]);

/** How the README says to run an example: "saved as `example.ts` and run with `npx tsx example.ts`". */
const RUN = /saved as `([\w.-]+)` and run with\s+`npx tsx \1`/;

describe('README examples', () => {
  it('has the examples the README promises (sequential, functional/cross, masks, save/load)', () => {
    expect(examples.length).toBeGreaterThanOrEqual(4);
  });

  it('says how to run them: the file name and the command', () => {
    expect(readme).toMatch(RUN);
  });

  // Each example is saved as written, under the file name the README gives, and run with the
  // README's command in a child process: no wrapper, so top-level `await` in a CommonJS .ts
  // file fails here as it does for a reader.
  it.each(examples.map((example, i) => [i + 1, example]))('example %i runs as written with npx tsx', (_, example) => {
    const fileName = RUN.exec(readme)?.[1] ?? 'example.ts';
    // Inside the package folder, so that 'tfjs-attention' resolves to this package (built by
    // globalSetup) as it does in an app that installed it, and npx finds the local tsx.
    const folder = fs.mkdtempSync(path.join(root, `.tmp-readme-example-${_}-`));
    fs.writeFileSync(path.join(folder, fileName), example as string);
    try {
      const result = spawnSync('npx', ['tsx', fileName], {cwd: folder, encoding: 'utf8', timeout: 120_000});
      expect({status: result.status, stderr: result.stderr}).toEqual({status: 0, stderr: expect.any(String)});
      // A `console.log(...)  // expected` line in the README promises that output.
      const squeeze = (text: string) => text.replace(/\s+/g, '');
      for (const [, promised] of (example as string).matchAll(/console\.log\(.*\);\s*\/\/\s*(.+)$/gm)) {
        expect(squeeze(result.stdout)).toContain(squeeze(promised));
      }
    } finally {
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
