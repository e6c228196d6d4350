/** The four steps of the park model's attention for one sentence, as plain arrays to print and plot. */
import * as tf from '@tensorflow/tfjs';
import {ScaledDotProductAttention, traceAttention} from '../tfjs_attention';
import {heatmapSvg} from '../plots/heatmap_svg';
import {ATTENTION_LAYER, ParkModel} from './park_model';
import {checkFiniteOutput, encodeSentence, EncodedSentence} from './prediction';
import {PAD_ID} from './vocabulary';

/** One step of the computation: a name, the formula, and one matrix per head. */
export interface ExplainedStep {
  name: 'scores'|'scaled'|'weights'|'output';
  formula: string;
  /** [H, rows, cols] shape of `heads`, where rows are the sentence's tokens. */
  shape: number[];
  heads: number[][][];
}

export interface Explanation extends EncodedSentence {
  /** The tokens on the heatmaps' axes: the words the model read (padding left out). */
  labels: string[];
  /** The multiplier of step 2, 1/sqrt(dk) unless the layer sets another. */
  scale: number;
  keyDim: number;
  /** Q·Kᵀ, scaled, A = softmax, R = A·V, for the model's attention layer. */
  steps: ExplainedStep[];
}

/** Runs the sentence up to the attention layer and traces the layer's four steps. */
export function explainSentence(park: ParkModel, sentence: string): Explanation {
  const encoded = encodeSentence(park, sentence);
  const layer = park.model.getLayer(ATTENTION_LAYER) as ScaledDotProductAttention;
  const start = park.window - encoded.kept.length;  // inputs are left-padded: the words start here
  const arrays = tf.tidy(() => {
    const ids = tf.tensor2d([encoded.ids], [1, park.window], 'int32');        // [1, W]
    const upToAttention = tf.model({inputs: park.model.inputs, outputs: layer.input as tf.SymbolicTensor});
    const x = upToAttention.predict(ids) as tf.Tensor3D;                     // [1, W, d]
    const padding = tf.notEqual(ids, PAD_ID);                                 // [1, W]
    const trace = traceAttention(layer, x, {mask: padding});
    const crop = (t: tf.Tensor4D, cropCols: boolean) =>                      // [H, W', W' or dv]
      (cropCols ? t.slice([0, 0, start, start]) : t.slice([0, 0, start, 0])).squeeze([0]).arraySync() as number[][][];
    return {
      scores: crop(trace.scores, true), scaled: crop(trace.scaled, true), weights: crop(trace.weights, true),
      output: crop(trace.output, false), scale: trace.scaleFactor, keyDim: trace.query.shape[3],
    };
  });
  for (const name of ['scores', 'scaled', 'weights', 'output'] as const) {
    checkFiniteOutput(park, arrays[name].flat(2), `attention ${name}`, encoded);
  }
  const shapeOf = (heads: number[][][]) => [heads.length, heads[0]?.length ?? 0, heads[0]?.[0]?.length ?? 0];
  const step = (name: ExplainedStep['name'], formula: string, heads: number[][][]): ExplainedStep =>
    ({name, formula, shape: shapeOf(heads), heads});
  return {
    ...encoded, labels: encoded.kept, scale: arrays.scale, keyDim: arrays.keyDim,
    steps: [
      step('scores', 'S = Q·Kᵀ', arrays.scores),
      step('scaled', `S / √d = S · ${arrays.scale.toPrecision(4)}  (d = ${arrays.keyDim})`, arrays.scaled),
      step('weights', 'A = softmax(S / √d)', arrays.weights),
      step('output', 'R = A·V', arrays.output),
    ],
  };
}

/** The mean over heads of [H, rows, cols] matrices. */
export function meanOverHeads(heads: number[][][]): number[][] {
  return heads[0].map((row, i) => row.map((_, j) => heads.reduce((sum, head) => sum + head[i][j], 0) / heads.length));
}

/** Step 3's weights A, mean of the heads, as an SVG heatmap: queries down, keys across. */
export function attentionHeatmapSvg(explanation: Explanation): string {
  const weights = explanation.steps.find(step => step.name === 'weights')!;
  return heatmapSvg(meanOverHeads(weights.heads), {
    rowLabels: explanation.labels, colLabels: explanation.labels, showValues: true,
    title: `A = softmax(QKᵀ/√d), mean of ${weights.heads.length} heads: "${explanation.kept.join(' ')} ___"`,
    xLabel: 'key (word attended to)', yLabel: 'query (word attending)',
  });
}
