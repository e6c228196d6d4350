/** Text from models and users made safe to print on a terminal: control characters shown, never obeyed. */

/**
 * C0 controls (ESC, BEL, CR, ...), DEL, C1 controls (0x9b is a one-byte CSI) and the
 * bidirectional overrides and isolates, which reorder what a terminal shows.
 */
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/** `\x1b` for controls below U+0100, `\u202e` for the others. */
function escaped(character: string): string {
  const code = character.charCodeAt(0);
  return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

/**
 * `text` with every control character written out as an escape, e.g. "\x1b[31mred" prints
 * as `\x1b[31mred` instead of turning the terminal red; newlines too, so a word stays on its
 * line. Every script prints words, labels and messages through this.
 */
export function terminalSafe(text: string): string {
  return String(text).replace(CONTROL, escaped);
}

/** `terminalSafe` line by line: keeps the line breaks of a multi-line message. */
export function terminalSafeLines(text: string): string {
  return String(text).split('\n').map(terminalSafe).join('\n');
}

/**
 * JSON for stdout: JSON.stringify escapes C0 controls but leaves C1 controls and bidi
 * overrides raw; here they become `\u` escapes too, so the output is still the same JSON.
 */
export function terminalSafeJson(value: unknown): string {
  return JSON.stringify(value).replace(CONTROL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
