// Progress of a long transfer on the terminal: one line on stderr, redrawn in place at most ten
// times a second, shown only when stderr is a terminal and the transfer has taken over 300 ms,
// and wiped when it ends. Piped or redirected, nothing is written.

import { fstatSync } from "node:fs";
import { monotonicMs } from "../util/clock.js";

const size = (n: number): string => {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${u[i]}`;
};

export class Progress {
  private bytes = 0;
  private readonly t0 = monotonicMs();
  private last = 0;
  private shown = false;
  private readonly on: boolean;
  /** Redraws while nothing arrives, so that a stalled transfer still shows where it is. */
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private label: string,
    private readonly total?: number,
    private readonly out: NodeJS.WriteStream = process.stderr,
  ) {
    this.on = out.isTTY === true;
    if (this.on) {
      this.timer = setInterval(() => this.draw(true), 250);
      this.timer.unref();
    }
  }

  /** The size of stdin when it is a regular file (`< big.iso`), else undefined. */
  static stdinSize(): number | undefined {
    try {
      const s = fstatSync(0);
      return s.isFile() ? s.size : undefined;
    } catch {
      return undefined;
    }
  }

  add(n: number): void {
    this.bytes += n;
    this.draw(false);
  }

  /** Says what is going on now (e.g. "sending" once the input is read). */
  phase(label: string): void {
    this.label = label;
    this.draw(true);
  }

  private draw(force: boolean): void {
    if (!this.on) return;
    const now = monotonicMs();
    if (now - this.t0 < 300 || (!force && now - this.last < 100)) return;
    this.last = now;
    this.shown = true;
    const secs = (now - this.t0) / 1000;
    const pct = this.total ? ` ${((100 * this.bytes) / this.total).toFixed(0)}% of ${size(this.total)}` : "";
    this.out.write(`\r\x1b[Kcircuit: ${this.label} ${size(this.bytes)}${pct}  ${size(this.bytes / secs)}/s`);
  }

  /** Wipes the line (the command's own output, if any, follows on a clean line). */
  done(): void {
    clearInterval(this.timer);
    if (this.shown) this.out.write("\r\x1b[K");
    this.shown = false;
  }
}
