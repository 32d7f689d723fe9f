/**
 * Lines out of the serial console's byte stream, with a bound: a guest that never ends a line
 * must not grow the agent's memory. `node:readline` has no length limit, hence this small class.
 */
export class SerialLines {
  #pending = "";

  /** @param maxLine longest unfinished line kept (characters); beyond it, it is dropped. */
  constructor(
    private readonly maxLine: number,
    private readonly onDropped: (characters: number) => void,
  ) {}

  /** Feed a chunk; returns the lines it completed (without `\n` or a trailing `\r`). */
  push(chunk: string): string[] {
    this.#pending += chunk;
    const lines: string[] = [];
    let newline: number;
    while ((newline = this.#pending.indexOf("\n")) >= 0) {
      lines.push(this.#pending.slice(0, newline).replace(/\r$/, ""));
      this.#pending = this.#pending.slice(newline + 1);
    }
    if (this.#pending.length > this.maxLine) {
      // A frame cut in two would be garbage: drop all of it, and say so.
      this.onDropped(this.#pending.length);
      this.#pending = "";
    }
    return lines;
  }
}
