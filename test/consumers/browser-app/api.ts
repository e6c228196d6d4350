/**
 * What the consumer page (main.ts) offers on `window.consumerApp`, typed for both the page and
 * test/browser_consumer_test.ts. Types only: nothing here runs.
 */

/** The backends the page runs on. */
export type BrowserBackend = 'webgl'|'wasm'|'webgpu';

/** A layer to run: its configuration, input, weights (setWeights order) and the cotangent of its output. */
export interface LayerCase {
  config: {numHeads: number; keyDim: number; valueDim?: number; useBias?: boolean; outputDim?: number; causal?: boolean};
  /** [B, T, d]. */
  input: number[][][];
  /** The layer's weights in `layer.weights` order (wq, wk, wv, bq, bk, bv, wo, bo). */
  weights: Array<number[]|number[][]>;
  /** [B, T, out]: the input gradient is that of sum(output · cotangent). */
  cotangent: number[][][];
}

export interface LayerResult {
  /** The backend that was active. */
  backend: string;
  /** [B, T, out]. */
  output: number[][][];
  /** d sum(output · cotangent) / d input: [B, T, d]. */
  gradient: number[][][];
  /** The kernels the forward call ran (tf.profile's kernelNames): on wasm, the fused one. */
  kernels: string[];
  /** tf.memory().numTensors after minus before. */
  leaked: number;
}

export interface ModelResult {
  backend: string;
  /** model.predict(input). */
  prediction: number[][];
  leaked: number;
}

/** A model input as the Keras fixtures hold it: row-major values. */
export interface KerasInput {
  shape: number[];
  dtype: 'float32'|'int32'|'bool';
  values: number[];
}

export interface KerasResult {
  backend: string;
  /** Every output of model.predict, flattened row-major, in the model's output order. */
  outputs: number[][];
  /** The loaded model's layer classes, in order. */
  layers: string[];
  leaked: number;
}

export interface ConsumerApp {
  /** Resolves once the page is set up, with the backends registered in it. */
  ready: Promise<string[]>;
  /** Runs the layer on `backend` and shows its output and input gradient on the page. */
  runLayer(backend: BrowserBackend, layerCase: LayerCase): Promise<LayerResult>;
  /** Loads the model at `url` with tf.loadLayersModel on `backend`, predicts `input` [B, T, d] and shows it. */
  predictModel(backend: BrowserBackend, url: string, input: number[][][]): Promise<ModelResult>;
  /**
   * Fetches the `.keras` archive at `url` as a Blob (what a file input gives), loads it with
   * loadKerasModel from tfjs-attention/keras on `backend`, predicts `inputs` and shows the outputs.
   */
  loadKeras(backend: BrowserBackend, url: string, inputs: KerasInput[]): Promise<KerasResult>;
}

declare global {
  interface Window {
    consumerApp: ConsumerApp;
  }
}
