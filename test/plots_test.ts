/** Specification of the SVG heatmap and line chart and of the terminal heatmap. */

import {ValueError} from '../src/errors';
import {blueOf, escapeXml, heatmapSvg} from '../scripts/app/plots/heatmap_svg';
import {lineChartSvg, niceTicks} from '../scripts/app/plots/line_chart_svg';
import {terminalHeatmap} from '../scripts/app/plots/terminal_heatmap';

/** Throws unless every tag is closed in order: enough to catch broken markup. */
function expectWellFormed(svg: string): void {
  expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
  expect(svg.endsWith('</svg>')).toBe(true);
  const stack: string[] = [];
  for (const [tag, closing, name, selfClosing] of svg.matchAll(/<(\/?)([a-zA-Z]+)[^>]*?(\/?)>/g)) {
    if (selfClosing) continue;
    if (!closing) {
      stack.push(name);
    } else if (stack.pop() !== name) {
      throw new Error(`unbalanced ${tag}`);
    }
  }
  expect(stack).toEqual([]);
  // Every & starts an entity, so labels cannot leak raw markup.
  expect(svg).not.toMatch(/&(?!(amp|lt|gt|quot|apos);)/);
}

const fills = (svg: string) => [...svg.matchAll(/<rect class="cell"[^>]*fill="(#[0-9a-f]{6})"/g)].map((m) => m[1]);
const luminance = (hex: string) => {
  const [r, g, b] = [1, 3, 5].map((k) => parseInt(hex.slice(k, k + 2), 16));
  return 0.299 * r + 0.587 * g + 0.114 * b;
};

describe('heatmapSvg', () => {
  const weights = [[0.1, 0.7, 0.2], [0.05, 0.05, 0.9]];
  const opts = {rowLabels: ['play', 'park'], colLabels: ['i', 'like', 'the'], title: 'Attention'};

  it('draws one <rect> per entry and no other <rect>', () => {
    const svg = heatmapSvg(weights, opts);
    expectWellFormed(svg);
    expect(svg.match(/<rect/g)).toHaveLength(6);
  });

  it('labels rows on the left and columns rotated on top, with the title', () => {
    const svg = heatmapSvg(weights, opts);
    expect(svg.match(/class="row-label"[^>]*>(play|park)</g)).toHaveLength(2);
    expect(svg.match(/class="col-label"[^>]*rotate\(-45[^>]*>(i|like|the)</g)).toHaveLength(3);
    expect(svg).toContain('>Attention</text>');
  });

  it('scales values in [0, 1] from white (0) to dark blue (1)', () => {
    // The colour stops at 0, 0.25, 0.5, 0.75, 1: ffffff, c6dbef, 6baed6, 2171b5, 08306b.
    expect(blueOf(0)).toBe('#ffffff');
    expect(blueOf(0.25)).toBe('#c6dbef');
    expect(blueOf(0.5)).toBe('#6baed6');
    expect(blueOf(0.75)).toBe('#2171b5');
    expect(blueOf(1)).toBe('#08306b');
    // Halfway between the first two stops: (255+198)/2 = 226.5 -> 227 (e3), 237 (ed), 247 (f7).
    expect(blueOf(0.125)).toBe('#e3edf7');
    const svg = heatmapSvg([[0, 1], [0.5, 0.25]], {rowLabels: ['a', 'b'], colLabels: ['c', 'd']});
    expect(fills(svg)).toEqual(['#ffffff', '#08306b', '#6baed6', '#c6dbef']);
    expect(svg).toMatch(/class="bar-max"[^>]*>1</);
    expect(svg).toMatch(/class="bar-min"[^>]*>0</);
  });

  it('puts the darkest cell where the max is', () => {
    const colors = fills(heatmapSvg(weights, opts)).map(luminance);
    expect(colors.indexOf(Math.min(...colors))).toBe(5);  // 0.9 at row 1, column 2
    expect(colors.indexOf(Math.max(...colors))).toBe(3);  // first 0.05
  });

  it('scales other values over [min, max] of the matrix', () => {
    const svg = heatmapSvg([[2, 4], [6, 10]], {rowLabels: ['a', 'b'], colLabels: ['c', 'd']});
    expect(fills(svg)).toEqual(['#ffffff', '#c6dbef', '#6baed6', '#08306b']);  // 0, 0.25, 0.5, 1
    expect(svg).toMatch(/class="bar-max"[^>]*>10</);
    expect(svg).toMatch(/class="bar-min"[^>]*>2</);
  });

  it('shades a constant matrix white rather than dividing by zero', () => {
    expect(fills(heatmapSvg([[3, 3]], {rowLabels: ['a'], colLabels: ['b', 'c']}))).toEqual(['#ffffff', '#ffffff']);
  });

  it('prints values only when asked, white on dark cells and black on light ones', () => {
    expect(heatmapSvg(weights, opts)).not.toContain('class="value"');
    const svg = heatmapSvg(weights, {...opts, showValues: true});
    const values = [...svg.matchAll(/class="value"[^>]*fill="(#[0-9a-f]{6})">([^<]*)</g)].map((m) => [m[2], m[1]]);
    expect(values).toEqual([
      ['0.10', '#000000'], ['0.70', '#ffffff'], ['0.20', '#000000'],
      ['0.05', '#000000'], ['0.05', '#000000'], ['0.90', '#ffffff'],
    ]);
  });

  it('escapes XML in labels, title and axis labels', () => {
    const svg = heatmapSvg([[1]], {rowLabels: ['<b>&'], colLabels: ['"q\''], title: 'a<b', xLabel: 'x&y', yLabel: '<y>'});
    expectWellFormed(svg);
    expect(svg).toContain('&lt;b&gt;&amp;');
    expect(svg).toContain('&quot;q&apos;');
    expect(svg).toContain('a&lt;b');
    expect(svg).toContain('x&amp;y');
    expect(svg).toContain('&lt;y&gt;');
    expect(svg).not.toContain('<b>');
    expect(escapeXml('<a href="x">&\'')).toBe('&lt;a href=&quot;x&quot;&gt;&amp;&apos;');
  });

  it('rejects labels that do not match the matrix, naming both sizes', () => {
    expect(() => heatmapSvg(weights, {rowLabels: ['a'], colLabels: ['i', 'like', 'the']}))
        .toThrow('`rowLabels` must have one label per matrix row. Received: 1 rowLabels for 2 rows');
    expect(() => heatmapSvg(weights, {rowLabels: ['a', 'b'], colLabels: ['i', 'like']}))
        .toThrow('`colLabels` must have one label per matrix column. Received: 2 colLabels for 3 columns in matrix[0]');
    expect(() => heatmapSvg([[1, 2], [3]], {rowLabels: ['a', 'b'], colLabels: ['c', 'd']}))
        .toThrow('Received: 2 colLabels for 1 columns in matrix[1]');
  });

  it('rejects an empty matrix and values that are not finite numbers', () => {
    expect(() => heatmapSvg([], {rowLabels: [], colLabels: []})).toThrow(ValueError);
    expect(() => heatmapSvg([[]], {rowLabels: ['a'], colLabels: []})).toThrow(ValueError);
    expect(() => heatmapSvg([[1, NaN]], {rowLabels: ['a'], colLabels: ['b', 'c']})).toThrow('matrix[0][1]');
    expect(() => heatmapSvg([[1]], undefined as unknown as {rowLabels: string[]; colLabels: string[]})).toThrow(ValueError);
  });
});

describe('niceTicks', () => {
  it('picks round steps of 1, 2 or 5 x 10^k', () => {
    expect(niceTicks(0, 2.3)).toEqual({ticks: [0, 0.5, 1, 1.5, 2], step: 0.5});
    expect(niceTicks(0, 1)).toEqual({ticks: [0, 0.2, 0.4, 0.6, 0.8, 1], step: 0.2});
    expect(niceTicks(1, 30, 10)).toEqual({ticks: [5, 10, 15, 20, 25, 30], step: 5});
  });
});

describe('lineChartSvg', () => {
  const series = [{name: 'loss', values: [2.0, 1.5, 1.0, 0.8, 0.7]}, {name: 'accuracy', values: [0.2, 0.5, 0.6]}];
  const pointsOf = (svg: string) =>
    [...svg.matchAll(/<polyline[^>]*points="([^"]*)"/g)].map((m) => m[1].split(' ').map((p) => p.split(',').map(Number)));

  it('draws one polyline per series with one point per value', () => {
    const svg = lineChartSvg(series, {title: 'Training', xLabel: 'epoch', yLabel: 'value'});
    expectWellFormed(svg);
    expect(pointsOf(svg).map((p) => p.length)).toEqual([5, 3]);
  });

  it('puts epoch i at the same x in every series, and higher values higher up', () => {
    const [loss, accuracy] = pointsOf(lineChartSvg(series, {}));
    expect(accuracy.map((p) => p[0])).toEqual(loss.slice(0, 3).map((p) => p[0]));
    for (let i = 1; i < loss.length; i++) {
      expect(loss[i][0]).toBeGreaterThan(loss[i - 1][0]);
      expect(loss[i][1]).toBeGreaterThan(loss[i - 1][1]);  // loss falls: SVG y grows downward
    }
  });

  it('has a legend with each name in its color, title and axis labels', () => {
    const svg = lineChartSvg([{name: 'loss', values: [1, 2], color: '#123456'}, {name: 'val', values: [2, 1]}], {
      title: 'Loss', xLabel: 'epoch', yLabel: 'cross-entropy',
    });
    expect(svg).toMatch(/<line class="legend"[^>]*stroke="#123456"/);
    expect(svg).toMatch(/<text class="legend"[^>]*>loss</);
    expect(svg).toMatch(/<text class="legend"[^>]*>val</);
    expect(svg).toContain('>Loss</text>');
    expect(svg).toContain('>epoch</text>');
    expect(svg).toContain('>cross-entropy</text>');
  });

  it('labels x ticks with epoch numbers and y ticks with round values', () => {
    const svg = lineChartSvg(series, {});
    const ticks = (axis: string) => [...svg.matchAll(new RegExp(`class="${axis}"[^>]*>([^<]*)<`, 'g'))].map((m) => m[1]);
    expect(ticks('x-tick')).toEqual(['1', '2', '3', '4', '5']);
    expect(ticks('y-tick')).toEqual(['0', '0.5', '1', '1.5', '2']);
  });

  it('uses yMin/yMax when given, clamping values outside', () => {
    const svg = lineChartSvg([{name: 'accuracy', values: [0.5, 1.5]}], {yMin: 0, yMax: 1});
    const ticks = [...svg.matchAll(/class="y-tick"[^>]*>([^<]*)</g)].map((m) => m[1]);
    expect(ticks).toEqual(['0', '0.2', '0.4', '0.6', '0.8', '1']);
    const topTickY = Number(svg.match(/class="y-tick"[^>]*y="([^"]*)"[^>]*>1</)![1]);
    expect(pointsOf(svg)[0][1][1]).toBe(topTickY);
  });

  it('marks the point of a one-value series', () => {
    const svg = lineChartSvg([{name: 'loss', values: [0.7]}], {});
    expectWellFormed(svg);
    expect(pointsOf(svg)[0]).toHaveLength(1);
    expect(svg.match(/<circle/g)).toHaveLength(1);
  });

  it('escapes names, colors and the title', () => {
    const svg = lineChartSvg([{name: 'a<b>', values: [1, 2], color: '"red'}], {title: '&'});
    expectWellFormed(svg);
    expect(svg).toContain('a&lt;b&gt;');
    expect(svg).not.toContain('a<b>');
    // The color reaches its attributes as &quot;red: a raw quote would end the attribute early.
    expect(svg).toContain('stroke="&quot;red"');
    expect(svg).not.toContain('""red');
    expect(svg).toContain('>&amp;<');
  });

  it('rejects no series, empty or non-finite values and an empty y range', () => {
    expect(() => lineChartSvg([], {})).toThrow('argument `series`');
    expect(() => lineChartSvg([{name: 'loss', values: []}], {})).toThrow('series[0].values');
    expect(() => lineChartSvg([{name: 'loss', values: [1, NaN]}], {})).toThrow('series[0].values[1]');
    expect(() => lineChartSvg([{name: 'loss', values: [1]}], {yMin: 1, yMax: 1}))
        .toThrow('`yMin` must be less than `yMax`. Received: yMin=1, yMax=1');
    expect(() => lineChartSvg([{name: 'loss', values: [1]}], {yMax: Infinity})).toThrow(ValueError);
  });
});

describe('terminalHeatmap', () => {
  const matrix = [[0.1, 0.9], [0.5, 0.25]];

  it('prints a plain table without color', () => {
    expect(terminalHeatmap(matrix, ['i', 'like'], ['park', 'basketball'], {color: false})).toBe([
      '          park  basketb…',
      'i         0.10      0.90',
      'like      0.50      0.25',
    ].join('\n'));
  });

  it('prints `digits` decimals', () => {
    expect(terminalHeatmap([[0.123, 1]], ['a'], ['b', 'c'], {color: false, digits: 1})).toBe([
      '     b    c',
      'a  0.1  1.0',
    ].join('\n'));
  });

  it('has no ANSI escapes without color', () => {
    expect(terminalHeatmap(matrix, ['i', 'like'], ['park', 'ball'], {color: false})).not.toContain('\x1b');
  });

  it('shades backgrounds with 256-color ANSI by default: white for 0, dark blue for 1', () => {
    const text = terminalHeatmap([[0, 1]], ['a'], ['b', 'c']);
    expect(text.split('\n')[1]).toBe(
        'a ' + '\x1b[48;5;231m\x1b[38;5;16m 0.00 \x1b[0m' + '\x1b[48;5;17m\x1b[38;5;231m 1.00 \x1b[0m');
  });

  it('prints control characters in labels as escapes, never raw', () => {
    const text = terminalHeatmap([[1]], ['\x1b[31mred'], ['a\x07b'], {color: false});
    expect(text).toBe([
      // 11 label columns, a space, then the 6-wide column with a space either side.
      `${' '.repeat(13)}a\\x07b`,
      '\\x1b[31mred    1.00',
    ].join('\n'));
    // With color the only ESC bytes are the heatmap's own color codes, each starting "\x1b[" then 0, 38 or 48.
    const colored = terminalHeatmap([[1]], ['\x1b[31mred'], ['\u202eb'], {});
    expect(colored.match(/\x1b\[(?!0m|38;5;|48;5;)/g)).toBeNull();
    expect(colored).not.toContain('\u202e');
    expect(colored).toContain('\\u202eb');
  });

  it('cuts long row labels to 16 characters', () => {
    const text = terminalHeatmap([[1]], ['a-very-long-row-label'], ['x'], {color: false});
    expect(text.split('\n')[1]).toBe('a-very-long-row…  1.00');
  });

  it('rejects labels that do not match the matrix and bad digits', () => {
    expect(() => terminalHeatmap(matrix, ['i'], ['park', 'ball'])).toThrow('Received: 1 rowLabels for 2 rows');
    expect(() => terminalHeatmap(matrix, ['i', 'like'], ['park'])).toThrow('Received: 1 colLabels for 2 columns');
    expect(() => terminalHeatmap(matrix, ['i', 'like'], ['park', 'ball'], {digits: -1})).toThrow('Received: digits=-1');
  });
});
