/** Heatmaps (e.g. attention weights) as self-contained SVG strings, with no dependencies. */

import {ValueError, invalidArgument} from '../tfjs_attention';

/** Options of {@link heatmapSvg}. */
export interface HeatmapOptions {
  rowLabels: string[];
  colLabels: string[];
  title?: string;
  xLabel?: string;
  yLabel?: string;
  /** Print each value in its cell. */
  showValues?: boolean;
}

/** Escapes the five XML special characters so labels cannot break the markup. */
export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', '\'': '&apos;'})[c]!);
}

/** The opening <svg> tag and, when there is one, a bold centred title at height `titleY`. */
export function svgHeader(width: number, height: number, fontSize: number, title: string|undefined, titleY: number): string[] {
  const header = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="${fontSize}">`,
  ];
  if (title) {
    header.push(`<text x="${width / 2}" y="${titleY}" text-anchor="middle" font-size="14" font-weight="bold">${escapeXml(title)}</text>`);
  }
  return header;
}

/**
 * Throws unless `matrix` is a non-empty rectangle of finite numbers with one row per
 * row label and one column per column label.
 */
export function checkLabeledMatrix(matrix: number[][], rowLabels: string[], colLabels: string[]): void {
  if (!Array.isArray(matrix) || matrix.length === 0 || !matrix.every((row) => Array.isArray(row))) {
    throw invalidArgument('matrix', 'a non-empty array of rows (number[][])', matrix);
  }
  for (const [name, labels] of [['rowLabels', rowLabels], ['colLabels', colLabels]] as const) {
    if (!Array.isArray(labels) || labels.some((l) => typeof l !== 'string')) {
      throw invalidArgument(name, 'an array of strings', labels);
    }
  }
  if (rowLabels.length !== matrix.length) {
    throw new ValueError(
        `\`rowLabels\` must have one label per matrix row. ` +
        `Received: ${rowLabels.length} rowLabels for ${matrix.length} rows`);
  }
  matrix.forEach((row, i) => {
    if (row.length !== colLabels.length) {
      throw new ValueError(
          `\`colLabels\` must have one label per matrix column. ` +
          `Received: ${colLabels.length} colLabels for ${row.length} columns in matrix[${i}]`);
    }
    row.forEach((v, j) => {
      if (typeof v !== 'number' || !Number.isFinite(v)) throw invalidArgument(`matrix[${i}][${j}]`, 'a finite number', v);
    });
  });
  if (colLabels.length === 0) throw invalidArgument('colLabels', 'at least one column', colLabels);
}

/** The color scale's ends: [0, 1] when every value is in [0, 1] (probabilities), else [min, max]. */
export function colorRange(matrix: number[][]): [number, number] {
  const values = matrix.flat();
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  return lo >= 0 && hi <= 1 ? [0, 1] : [lo, hi];
}

/** Where `value` lies between `lo` and `hi`, in [0, 1] (0 when the range is empty). */
export function shade(value: number, lo: number, hi: number): number {
  return hi > lo ? Math.min(1, Math.max(0, (value - lo) / (hi - lo))) : 0;
}

// White to dark blue (ColorBrewer "Blues"): each stop darker than the last.
const STOPS: [number, number, number][] = [[255, 255, 255], [198, 219, 239], [107, 174, 214], [33, 113, 181], [8, 48, 107]];

/** The fill for a shade in [0, 1]: `#ffffff` at 0, `#08306b` at 1. */
export function blueOf(t: number): string {
  const x = Math.min(1, Math.max(0, t)) * (STOPS.length - 1);
  const i = Math.min(STOPS.length - 2, Math.floor(x));
  const f = x - i;
  const rgb = STOPS[i].map((c, k) => Math.round(c + (STOPS[i + 1][k] - c) * f));
  return `#${rgb.map((c) => c.toString(16).padStart(2, '0')).join('')}`;
}

/** Black or white, whichever reads better on the given `#rrggbb` fill. */
function textColorOn(fill: string): string {
  const [r, g, b] = [1, 3, 5].map((k) => parseInt(fill.slice(k, k + 2), 16));
  return 0.299 * r + 0.587 * g + 0.114 * b < 140 ? '#ffffff' : '#000000';
}

/**
 * Short text for a value: 2 decimals (none from 100 up), or the integer as it is when
 * `integers` says the whole matrix holds integers (e.g. counts).
 */
function formatCellValue(v: number, integers = Number.isInteger(v)): string {
  if (integers) return String(v);
  return Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2);
}

const FONT = 12;
const CHAR_W = 7;  // rough width of a 12px sans-serif character, for layout only
const CELL = 36;

/**
 * Draws `matrix` as a heatmap: one `<rect>` per entry (and no other `<rect>`), shaded from
 * white to dark blue over [min, max] of the matrix, or [0, 1] when all values are in
 * [0, 1]. Row labels go on the left, column labels rotated on top, a color bar with its
 * min and max on the right; `showValues` prints each value in its cell.
 *
 * @returns a standalone SVG document (`<svg xmlns=...>...</svg>`).
 */
export function heatmapSvg(matrix: number[][], opts: HeatmapOptions): string {
  if (opts == null || typeof opts !== 'object') throw invalidArgument('opts', 'an object with rowLabels and colLabels', opts);
  const {rowLabels, colLabels, title, xLabel, yLabel, showValues = false} = opts;
  checkLabeledMatrix(matrix, rowLabels, colLabels);
  for (const [name, value] of [['title', title], ['xLabel', xLabel], ['yLabel', yLabel]] as const) {
    if (value !== undefined && typeof value !== 'string') throw invalidArgument(name, 'a string', value);
  }
  const [lo, hi] = colorRange(matrix);
  // One format for all cells, so 0.50 and 1 do not sit side by side.
  const integers = matrix.every((row) => row.every((v) => Number.isInteger(v)));
  const rows = matrix.length;
  const cols = colLabels.length;
  const longest = (labels: string[]) => Math.max(0, ...labels.map((l) => l.length));

  const titleH = title ? 28 : 8;
  const colLabelH = Math.ceil(longest(colLabels) * CHAR_W * Math.SQRT1_2) + 14;
  const yLabelW = yLabel ? 22 : 0;
  const left = 8 + yLabelW + longest(rowLabels) * CHAR_W + 8;
  const top = titleH + colLabelH;
  const gridW = cols * CELL;
  const gridH = rows * CELL;
  const barH = Math.max(gridH, 80);
  const barX = left + gridW + 20;
  const minText = formatCellValue(lo);
  const maxText = formatCellValue(hi);
  const barRight = barX + 14 + 6 + Math.max(minText.length, maxText.length) * CHAR_W;
  // The last column label leans right, past the grid.
  const labelRight = left + gridW - CELL / 2 + longest(colLabels) * CHAR_W * Math.SQRT1_2;
  const width = Math.ceil(Math.max(barRight, labelRight, title ? title.length * 8 : 0) + 10);
  const height = top + barH + (xLabel ? 36 : 12);

  const out: string[] = [];
  out.push(...svgHeader(width, height, FONT, title, 18));
  colLabels.forEach((label, j) => {
    const x = left + j * CELL + CELL / 2;
    const y = top - 6;
    out.push(`<text class="col-label" x="${x}" y="${y}" transform="rotate(-45 ${x} ${y})">${escapeXml(label)}</text>`);
  });
  rowLabels.forEach((label, i) => {
    const y = top + i * CELL + CELL / 2;
    out.push(
        `<text class="row-label" x="${left - 6}" y="${y}" text-anchor="end" ` +
        `dominant-baseline="middle">${escapeXml(label)}</text>`);
  });
  matrix.forEach((row, i) => {
    row.forEach((v, j) => {
      const x = left + j * CELL;
      const y = top + i * CELL;
      const fill = blueOf(shade(v, lo, hi));
      const tip = `${rowLabels[i]} / ${colLabels[j]}: ${v}`;
      out.push(
          `<rect class="cell" x="${x}" y="${y}" width="${CELL}" height="${CELL}" fill="${fill}" ` +
          `stroke="#ffffff" stroke-width="1"><title>${escapeXml(tip)}</title></rect>`);
      if (showValues) {
        out.push(
            `<text class="value" x="${x + CELL / 2}" y="${y + CELL / 2}" text-anchor="middle" ` +
            `dominant-baseline="middle" font-size="10" fill="${textColorOn(fill)}">${formatCellValue(v, integers)}</text>`);
      }
    });
  });
  // Color bar: bands drawn as paths, so the only <rect> elements are the cells and no
  // gradient id can clash when several SVGs share a page.
  const bands = 32;
  for (let k = 0; k < bands; k++) {
    const y0 = top + (barH * k) / bands;
    const h = (barH / bands + 0.5).toFixed(2);  // a little overlap hides seams between bands
    out.push(`<path d="M${barX} ${y0.toFixed(2)}h14v${h}h-14z" fill="${blueOf(1 - (k + 0.5) / bands)}"/>`);
  }
  out.push(`<path d="M${barX} ${top}h14v${barH}h-14z" fill="none" stroke="#888888"/>`);
  out.push(`<text class="bar-max" x="${barX + 20}" y="${top + 4}" dominant-baseline="hanging">${maxText}</text>`);
  out.push(`<text class="bar-min" x="${barX + 20}" y="${top + barH}">${minText}</text>`);
  if (xLabel) {
    out.push(`<text x="${left + gridW / 2}" y="${top + barH + 26}" text-anchor="middle">${escapeXml(xLabel)}</text>`);
  }
  if (yLabel) {
    const x = 8 + FONT;
    const y = top + gridH / 2;
    out.push(`<text x="${x}" y="${y}" text-anchor="middle" transform="rotate(-90 ${x} ${y})">${escapeXml(yLabel)}</text>`);
  }
  out.push('</svg>');
  return out.join('\n');
}
