/** Text output of the scripts: progress bars, prediction tables and notices. */
import {WordProbability} from '../park/prediction';

/** A bar of `width` cells, `fraction` of them full. */
export function bar(fraction: number, width: number): string {
  const full = Math.max(0, Math.min(width, Math.round(fraction * width)));
  return '█'.repeat(full) + '░'.repeat(width - full);
}

/** "Epoch  12/60 [████░░░░] loss 0.5120  accuracy 84.3%  0.21 s". */
export function epochLine(epoch: number, epochs: number, loss: number, accuracy: number, seconds: number): string {
  const digits = String(epochs).length;
  return `Epoch ${String(epoch + 1).padStart(digits)}/${epochs} [${bar((epoch + 1) / epochs, 24)}] ` +
      `loss ${loss.toFixed(4)}  accuracy ${(accuracy * 100).toFixed(1).padStart(5)}%  ${seconds.toFixed(2)} s`;
}

/** One line per word: rank, word, probability and a bar. */
export function predictionTable(predictions: WordProbability[]): string {
  const width = Math.max(...predictions.map(p => p.word.length), 4);
  return predictions.map((p, i) =>
    `  ${String(i + 1).padStart(2)}. ${p.word.padEnd(width)}  ${(p.probability * 100).toFixed(2).padStart(6)}%  ${bar(p.probability, 30)}`)
      .join('\n');
}

/** Notices about how the sentence was read, or [] when it was read as typed. */
export function readingNotices(read: {unknown: string[]; truncated: boolean; kept: string[]; tokens: string[]}): string[] {
  const notices: string[] = [];
  if (read.unknown.length > 0) {
    notices.push(`Notice: unknown word${read.unknown.length > 1 ? 's' : ''} read as <unk>: ${read.unknown.join(', ')}`);
  }
  if (read.truncated) {
    notices.push(
        `Notice: the sentence has ${read.tokens.length} words and the model reads the last ${read.kept.length}: ` +
        `"${read.kept.join(' ')}"`);
  }
  return notices;
}
