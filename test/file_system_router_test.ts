/**
 * The file:// routers in this process: registered once per tfjs instance (in a registry that copies of the package
 * share), answering single file:// paths only; and, when another router answers file:// too (tfjs-node's), stepping
 * aside and taking over that handler's class so that its saves and loads of a single path run FileSystemIO. tfjs-node
 * is stood in for by fake handler classes, each with a router of its own registered in this file's tfjs instance.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import '../src/node';
import {FileSystemIO, registerFileSystemRouters} from '../src/io/file_system_io';

const ROUTED = Symbol.for('tfjs-attention.fileSystemRouters');
const TAKEN_OVER = Symbol.for('tfjs-attention.nodeFileSystemTakenOver');

let tmp = '';

beforeAll(() => {
  tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'tfjs-attention-router-')));
});

afterAll(() => {
  if (tmp) fs.rmSync(tmp, {recursive: true, force: true});
});

const artifacts = (): tf.io.ModelArtifacts => ({
  modelTopology: {class_name: 'Sequential'},
  weightSpecs: [{name: 'w', shape: [2], dtype: 'float32'}],
  weightData: new Float32Array([1, 2]).buffer,
});

describe('the file:// routers, alone (no tfjs-node)', () => {
  it('are registered once per tfjs instance, in the registry that every copy of the package shares', () => {
    const routed = (globalThis as unknown as {[ROUTED]?: WeakSet<object>})[ROUTED];
    expect(routed).toBeInstanceOf(WeakSet);
    expect(routed!.has(tf.io)).toBe(true);
    registerFileSystemRouters();  // a second copy of the package on the same tfjs
    expect(tf.io.getSaveHandlers(`file://${tmp}/m`)).toHaveLength(1);
    expect(tf.io.getLoadHandlers(`file://${tmp}/m/model.json`)).toHaveLength(1);
  });

  it('answer a single file:// path with a FileSystemIO, and nothing else', () => {
    const [save] = tf.io.getSaveHandlers(`file://${tmp}/m`);
    expect(save).toBeInstanceOf(FileSystemIO);
    expect((save as FileSystemIO).folder).toBe(path.join(tmp, 'm'));
    expect((tf.io.getLoadHandlers(`file://${tmp}/m/model.json`)[0] as FileSystemIO).folder).toBe(path.join(tmp, 'm'));
    expect(tf.io.getSaveHandlers(`foo://${tmp}/m`)).toEqual([]);
    expect(tf.io.getSaveHandlers(`${tmp}/m`)).toEqual([]);
    expect(tf.io.getLoadHandlers([`file://${tmp}/model.pb`, `file://${tmp}/weights_manifest.json`] as unknown as string)).toEqual([]);
  });
});

/** What the fake handlers' own save and load were called with. */
const ownCalls: string[] = [];

type Shape = {path: unknown; loadJSONModel?: boolean; createOrVerifyDirectory?: boolean; load?: boolean};

/** A fresh handler class shaped like tfjs-node's NodeFileSystem (or lacking a part of it). */
function fakeClass(name: string, shape: Shape): new () => tf.io.IOHandler {
  class Fake {
    path = shape.path;
    async save(): Promise<tf.io.SaveResult> {
      ownCalls.push(`${name} save`);
      return {modelArtifactsInfo: {dateSaved: new Date(), modelTopologyType: 'JSON'}};
    }
  }
  const proto = Fake.prototype as unknown as {[key: string]: unknown};
  if (shape.loadJSONModel !== false) proto.loadJSONModel = () => undefined;
  if (shape.createOrVerifyDirectory !== false) proto.createOrVerifyDirectory = () => undefined;
  if (shape.load !== false) {
    proto.load = async () => {
      ownCalls.push(`${name} load`);
      return {};
    };
  }
  return Fake as unknown as new () => tf.io.IOHandler;
}

describe('beside another file:// router (tfjs-node\'s, faked)', () => {
  const folder = (kind: string) => path.join(tmp, `fake-${kind}`);
  const classes: {[kind: string]: new () => tf.io.IOHandler} = {};
  const cases: {[kind: string]: Shape} = {
    single: {path: ''},  // path set per URL below
    pair: {path: ['model.pb', 'weights_manifest.json']},
    noLoadJSONModel: {path: '', loadJSONModel: false},
    noCreateOrVerifyDirectory: {path: '', createOrVerifyDirectory: false},
    numberPath: {path: 7},
    noLoad: {path: ''},
  };

  beforeAll(() => {
    for (const [kind, shape] of Object.entries(cases)) classes[kind] = fakeClass(kind, {...shape, load: kind !== 'noLoad'});
    tf.io.registerLoadRouter(((url: string|string[]) => {
      if (typeof url !== 'string' || !url.startsWith('file://')) return null;
      const kind = Object.keys(cases).find(k => url.includes(`/fake-${k}`));
      if (kind == null) return null;
      const handler = new classes[kind]() as tf.io.IOHandler & {path: unknown};
      if (handler.path === '') handler.path = url.slice('file://'.length);
      return handler;
    }) as Parameters<typeof tf.io.registerLoadRouter>[0]);
  });

  /** The handler tfjs gives for the kind's URL: the fake's alone, ours having stepped aside. */
  function handlerFor(kind: string): tf.io.IOHandler {
    const handlers = tf.io.getLoadHandlers(`file://${folder(kind)}`);
    expect(handlers).toHaveLength(1);
    expect(handlers[0]).toBeInstanceOf(classes[kind]);
    return handlers[0];
  }

  const takenOver = (kind: string) => (classes[kind].prototype as {[TAKEN_OVER]?: boolean})[TAKEN_OVER];

  it('a single path: its class is taken over once; its save and load run FileSystemIO', async () => {
    ownCalls.length = 0;
    const handler = handlerFor('single');
    expect(takenOver('single')).toBe(true);
    const save = classes.single.prototype.save;
    handlerFor('single');
    expect(classes.single.prototype.save).toBe(save);  // not wrapped again

    await handler.save!(artifacts());
    expect(fs.readdirSync(folder('single')).sort()).toEqual(['model.json', expect.stringMatching(/^weights-[0-9a-f]{16}\.bin$/)]);
    const loaded = await handlerFor('single').load!();
    expect(Array.from(new Float32Array(loaded.weightData as ArrayBuffer))).toEqual([1, 2]);
    expect(ownCalls).toEqual([]);
  });

  it('a pair of paths (a graph model): the class is taken over, but saves and loads keep tfjs-node\'s own code', async () => {
    ownCalls.length = 0;
    const handler = handlerFor('pair');
    expect(takenOver('pair')).toBe(true);
    await handler.save!(artifacts());
    await handler.load!();
    expect(ownCalls).toEqual(['pair save', 'pair load']);
    expect(fs.existsSync(folder('pair'))).toBe(false);
  });

  it.each(['noLoadJSONModel', 'noCreateOrVerifyDirectory', 'numberPath', 'noLoad'])(
      'a handler that is not NodeFileSystem-shaped (%s) is left as it is', async kind => {
        ownCalls.length = 0;
        const handler = handlerFor(kind);
        expect(takenOver(kind)).toBeUndefined();
        await handler.save!(artifacts());
        expect(ownCalls).toEqual([`${kind} save`]);
        expect(fs.existsSync(folder(kind))).toBe(false);
      });
});
