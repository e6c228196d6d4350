/** Text output of the scripts: progress bars, prediction tables and notices. */
import type {WordProbability} from '../park/prediction';
import {terminalSafe} from './terminal_text';

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

/** One line per word: rank, word (control characters escaped), probability and a bar. */
export function predictionTable(predictions: WordProbability[]): string {
  const words = predictions.map(p => terminalSafe(p.word));
  const width = Math.max(...words.map(word => word.length), 4);
  return predictions.map((p, i) =>
    `  ${String(i + 1).padStart(2)}. ${words[i].padEnd(width)}  ${(p.probability * 100).toFixed(2).padStart(6)}%  ${bar(p.probability, 30)}`)
      .join('\n');
}

/** Notices about how the sentence was read, or [] when it was read as typed. */
export function readingNotices(read: {unknown: string[]; truncated: boolean; kept: string[]; tokens: string[]}): string[] {
  const notices: string[] = [];
  if (read.unknown.length > 0) {
    notices.push(
        `Notice: unknown word${read.unknown.length > 1 ? 's' : ''} read as <unk>: ${read.unknown.map(terminalSafe).join(', ')}`);
  }
  if (read.truncated) {
    notices.push(
        `Notice: the sentence has ${read.tokens.length} words and the model reads the last ${read.kept.length}: ` +
        `"${terminalSafe(read.kept.join(' '))}"`);
  }
  return notices;
}

/**
 * The summary line of `npm run train`. With no held-out sentences there is no held-out
 * accuracy to give, and the line says so in words instead of printing NaN%.
 */
export function accuracySummary(seconds: number, trainAccuracy: number, heldOutAccuracy: number, heldOutCount: number): string {
  const trained = `Trained in ${seconds.toFixed(1)} s. Training accuracy ${(trainAccuracy * 100).toFixed(1)}%, `;
  if (heldOutCount === 0) {
    return `${trained}no held-out accuracy: the corpus has 0 held-out sentences ` +
        `(a \`[held-out]\` line starts a held-out section; without one, every 10th sentence is held out).`;
  }
  return `${trained}held-out accuracy ${(heldOutAccuracy * 100).toFixed(1)}% ` +
      `(${heldOutCount} sentence${heldOutCount === 1 ? '' : 's'} never seen in training).`;
}
