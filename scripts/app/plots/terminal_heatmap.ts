/** Heatmaps as text tables for the terminal, shaded with 256-color ANSI backgrounds. */

import {terminalSafe} from '../cli/terminal_text';
import {invalidArgument} from '../tfjs_attention';
import {checkLabeledMatrix, colorRange, shade} from './heatmap_svg';

/** Options of {@link terminalHeatmap}. */
export interface TerminalHeatmapOptions {
  /** Shade cells with ANSI colors (default true); false gives plain text. */
  color?: boolean;
  /** Decimals printed per value (default 2). */
  digits?: number;
}

// 256-color codes from white to dark blue, each darker than the last.
const RAMP = [231, 195, 189, 153, 117, 111, 75, 69, 33, 27, 26, 25, 24, 18, 17];
// From this ramp index on the background is dark enough for white text.
const FIRST_DARK = 8;
const MAX_ROW_LABEL = 16;
const MAX_COL_LABEL = 8;

/** Cuts `text` to `width` characters, marking the cut with an ellipsis. */
function truncate(text: string, width: number): string {
  return text.length <= width ? text : `${text.slice(0, Math.max(0, width - 1))}…`;
}

/**
 * Renders `matrix` as a table: a header of column labels (cut to 8 characters), then
 * one line per row: its label (cut to 16 characters) and the values with `digits` decimals. With `color` each
 * cell's background is shaded white -> dark blue over [min, max] of the matrix, or [0, 1]
 * when all values are in [0, 1] (the same scale as {@link heatmapSvg}). Control characters in
 * the labels are printed as escapes (see {@link terminalSafe}), never sent to the terminal raw.
 *
 * @returns the lines joined with "\n", without a final newline.
 */
export function terminalHeatmap(
    matrix: number[][], rowLabels: string[], colLabels: string[], opts: TerminalHeatmapOptions = {}): string {
  checkLabeledMatrix(matrix, rowLabels, colLabels);
  if (opts == null || typeof opts !== 'object') throw invalidArgument('opts', 'an object', opts);
  const {color = true, digits = 2} = opts;
  if (typeof color !== 'boolean') throw invalidArgument('color', 'a boolean', color);
  if (typeof digits !== 'number' || !Number.isInteger(digits) || digits < 0 || digits > 10) {
    throw invalidArgument('digits', 'an integer from 0 to 10', digits);
  }
  const [lo, hi] = colorRange(matrix);
  const rows = rowLabels.map(terminalSafe);
  const cols = colLabels.map(terminalSafe);
  const texts = matrix.map((row) => row.map((v) => v.toFixed(digits)));
  // Columns fit the values and up to MAX_COL_LABEL characters of their labels.
  const colW = Math.max(
      ...texts.flat().map((t) => t.length), Math.min(MAX_COL_LABEL, Math.max(...cols.map((l) => l.length))));
  const labelW = Math.min(MAX_ROW_LABEL, Math.max(0, ...rows.map((l) => l.length)));

  // Each column is colW + 2 wide: the value with one space either side, which the
  // background color covers too, so neighbouring cells stay apart.
  const header = ' '.repeat(labelW) + ' ' + cols.map((l) => ` ${truncate(l, colW).padStart(colW)} `).join('');
  const lines = [header];
  matrix.forEach((row, i) => {
    const cells = row.map((v, j) => {
      const cell = ` ${texts[i][j].padStart(colW)} `;
      if (!color) return cell;
      const k = Math.round(shade(v, lo, hi) * (RAMP.length - 1));
      const fg = k >= FIRST_DARK ? 231 : 16;
      return `\x1b[48;5;${RAMP[k]}m\x1b[38;5;${fg}m${cell}\x1b[0m`;
    });
    lines.push(truncate(rows[i], labelW).padEnd(labelW) + ' ' + cells.join(''));
  });
  // Trailing spaces only matter under a background color.
  return (color ? lines : lines.map((l) => l.trimEnd())).join('\n');
}
