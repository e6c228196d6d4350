/** Line charts (e.g. loss and accuracy per epoch) as self-contained SVG strings, with no dependencies. */

import {ValueError, invalidArgument} from '../tfjs_attention';
import {escapeXml, svgHeader} from './heatmap_svg';

/** One line: `values[i]` is drawn at x = i + 1 (epochs count from 1). */
export interface LineSeries {
  name: string;
  values: number[];
  /** Any SVG color; a palette color by default. */
  color?: string;
}

/** Options of {@link lineChartSvg}; `yMin`/`yMax` fix the y range (values outside are clamped). */
export interface LineChartOptions {
  title?: string;
  xLabel?: string;
  yLabel?: string;
  yMin?: number;
  yMax?: number;
}

const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];
const PLOT_RIGHT = 520;  // the legend goes right of this, however long the names
const HEIGHT = 400;
const CHAR_W = 7;  // rough width of a 12px sans-serif character, for layout only

/** About `count` evenly spaced round numbers (steps of 1, 2 or 5 x 10^k) covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 5): {ticks: number[]; step: number} {
  const raw = (hi - lo) / Math.max(1, count);
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? 10 * power;
  const ticks: number[] = [];
  // Rounding to the step's decimals keeps 0.30000000000000004 out of the labels.
  const decimals = Math.max(0, -Math.floor(Math.log10(step)));
  for (let t = Math.ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9; t += step) {
    ticks.push(Number(t.toFixed(decimals)));
  }
  return {ticks, step};
}

/**
 * Draws each series as a `<polyline>` with one point per value, over x axis 1..longest
 * series and a y axis from the data (widened to round ticks) unless `yMin`/`yMax` are
 * given; with ticks, grid lines, axis labels and a legend on the right.
 *
 * @returns a standalone SVG document (`<svg xmlns=...>...</svg>`).
 */
export function lineChartSvg(series: LineSeries[], opts: LineChartOptions = {}): string {
  if (!Array.isArray(series) || series.length === 0) {
    throw invalidArgument('series', 'a non-empty array of {name, values, color?}', series);
  }
  series.forEach((s, i) => {
    if (s == null || typeof s.name !== 'string') throw invalidArgument(`series[${i}].name`, 'a string', s?.name);
    if (!Array.isArray(s.values) || s.values.length === 0) {
      throw invalidArgument(`series[${i}].values`, 'a non-empty array of numbers', s.values);
    }
    s.values.forEach((v, j) => {
      if (typeof v !== 'number' || !Number.isFinite(v)) throw invalidArgument(`series[${i}].values[${j}]`, 'a finite number', v);
    });
    if (s.color !== undefined && typeof s.color !== 'string') throw invalidArgument(`series[${i}].color`, 'a string', s.color);
  });
  if (opts == null || typeof opts !== 'object') throw invalidArgument('opts', 'an object', opts);
  const {title, xLabel, yLabel, yMin, yMax} = opts;
  for (const [name, value] of [['title', title], ['xLabel', xLabel], ['yLabel', yLabel]] as const) {
    if (value !== undefined && typeof value !== 'string') throw invalidArgument(name, 'a string', value);
  }
  for (const [name, value] of [['yMin', yMin], ['yMax', yMax]] as const) {
    if (value !== undefined && (typeof value !== 'number' || !Number.isFinite(value))) {
      throw invalidArgument(name, 'a finite number', value);
    }
  }

  const all = series.flatMap((s) => s.values);
  let lo = yMin ?? Math.min(...all);
  let hi = yMax ?? Math.max(...all);
  if (yMin !== undefined && yMax !== undefined && !(yMin < yMax)) {
    throw new ValueError(`\`yMin\` must be less than \`yMax\`. Received: yMin=${yMin}, yMax=${yMax}`);
  }
  if (!(lo < hi)) {
    // A flat line (or a range from only one fixed end) still needs some height.
    const pad = Math.abs(lo) > 0 ? Math.abs(lo) * 0.1 : 1;
    if (yMin === undefined) lo = Math.min(lo, hi) - pad;
    if (yMax === undefined) hi = Math.max(lo, hi) + pad;
    if (!(lo < hi)) throw new ValueError(`The y range is empty. Received: yMin=${yMin}, yMax=${yMax}`);
  }
  const y = niceTicks(lo, hi);
  if (yMin === undefined) lo = Math.min(lo, Math.floor(lo / y.step + 1e-9) * y.step);
  if (yMax === undefined) hi = Math.max(hi, Math.ceil(hi / y.step - 1e-9) * y.step);
  const yTicks = niceTicks(lo, hi).ticks.filter((t) => t >= lo - 1e-9 && t <= hi + 1e-9);

  const xMax = Math.max(2, ...series.map((s) => s.values.length));
  const xTicks = niceTicks(1, xMax, Math.min(10, xMax - 1)).ticks.filter((t) => Number.isInteger(t) && t >= 1);

  const legendW = 24 + Math.max(...series.map((s) => s.name.length)) * CHAR_W + 16;
  const left = (yLabel ? 24 : 0) + 56;
  const right = PLOT_RIGHT;
  const top = title ? 40 : 16;
  const bottom = HEIGHT - (xLabel ? 48 : 30);
  const width = PLOT_RIGHT + legendW;
  const px = (x: number) => left + ((x - 1) / (xMax - 1)) * (right - left);
  const py = (v: number) => bottom - ((Math.min(hi, Math.max(lo, v)) - lo) / (hi - lo)) * (bottom - top);
  const fmt = (v: number) => Number(v.toFixed(2)).toString();

  const out: string[] = [];
  out.push(...svgHeader(width, HEIGHT, 12, title, 22));
  for (const t of yTicks) {
    const yy = fmt(py(t));
    out.push(`<line class="grid" x1="${left}" y1="${yy}" x2="${right}" y2="${yy}" stroke="#e5e5e5"/>`);
    out.push(`<line class="tick" x1="${left - 5}" y1="${yy}" x2="${left}" y2="${yy}" stroke="#333333"/>`);
    out.push(`<text class="y-tick" x="${left - 8}" y="${yy}" text-anchor="end" dominant-baseline="middle">${t}</text>`);
  }
  for (const t of xTicks) {
    const xx = fmt(px(t));
    out.push(`<line class="tick" x1="${xx}" y1="${bottom}" x2="${xx}" y2="${bottom + 5}" stroke="#333333"/>`);
    out.push(`<text class="x-tick" x="${xx}" y="${bottom + 18}" text-anchor="middle">${t}</text>`);
  }
  out.push(`<line class="axis" x1="${left}" y1="${bottom}" x2="${right}" y2="${bottom}" stroke="#333333"/>`);
  out.push(`<line class="axis" x1="${left}" y1="${top}" x2="${left}" y2="${bottom}" stroke="#333333"/>`);
  if (xLabel) {
    out.push(`<text x="${(left + right) / 2}" y="${HEIGHT - 12}" text-anchor="middle">${escapeXml(xLabel)}</text>`);
  }
  if (yLabel) {
    const cy = (top + bottom) / 2;
    out.push(`<text x="18" y="${cy}" text-anchor="middle" transform="rotate(-90 18 ${cy})">${escapeXml(yLabel)}</text>`);
  }
  series.forEach((s, i) => {
    const color = escapeXml(s.color ?? PALETTE[i % PALETTE.length]);
    const points = s.values.map((v, j) => `${fmt(px(j + 1))},${fmt(py(v))}`).join(' ');
    out.push(
        `<polyline class="series" data-name="${escapeXml(s.name)}" points="${points}" fill="none" ` +
        `stroke="${color}" stroke-width="2" stroke-linejoin="round"/>`);
    // A one-value series draws no line, so mark its point.
    if (s.values.length === 1) out.push(`<circle cx="${fmt(px(1))}" cy="${fmt(py(s.values[0]))}" r="3" fill="${color}"/>`);
    const ly = top + 8 + i * 20;
    out.push(
        `<line class="legend" x1="${right + 12}" y1="${ly}" x2="${right + 30}" y2="${ly}" ` +
        `stroke="${color}" stroke-width="2"/>`);
    out.push(`<text class="legend" x="${right + 36}" y="${ly}" dominant-baseline="middle">${escapeXml(s.name)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}
