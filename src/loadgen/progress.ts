/**
 * Progress while a run goes: one line rewritten in place on a TTY (done/total, rate, failures, elapsed), or a plain
 * line every few seconds on anything else (CI logs, files).
 */

export interface ProgressState {
  done: number;
  failures: number;
  inFlight: number;
  /** Known request total, else undefined (duration-bounded runs show the time budget instead). */
  total?: number;
  /** Simulated seconds elapsed and the run's time budget. */
  elapsedSeconds: number;
  durationSeconds?: number;
}

function bar(fraction: number, width: number): string {
  const f = Math.max(0, Math.min(1, fraction));
  const full = Math.round(f * width);
  return '█'.repeat(full) + '░'.repeat(width - full);
}

function fmt(count: number, digits = 1): string {
  return count.toFixed(digits);
}

/** The progress line (no newline). */
export function progressLine(state: ProgressState, withBar: boolean): string {
  const fraction = state.total ? state.done / state.total : state.durationSeconds ? state.elapsedSeconds / state.durationSeconds : 0;
  const count = state.total ? `${state.done}/${state.total}` : `${state.done}`;
  const rate = state.elapsedSeconds > 0 ? state.done / state.elapsedSeconds : 0;
  const elapsed = state.durationSeconds && !state.total ? `${fmt(state.elapsedSeconds)}/${fmt(state.durationSeconds)}s` : `${fmt(state.elapsedSeconds)}s`;
  const parts = [`${count} requests`, `${fmt(rate, 2)} req/s`, `${state.inFlight} in flight`, `${state.failures} failed`, elapsed];
  return (withBar ? `${bar(fraction, 24)} ${fmt(fraction * 100, 0).padStart(3)}% ` : 'loadgen: ') + parts.join(' | ');
}

export class Progress {
  private timer: NodeJS.Timeout | undefined;
  private lastLength = 0;
  private readonly tty: boolean;

  constructor(
    private readonly stream: NodeJS.WritableStream,
    private readonly state: () => ProgressState,
    intervalMs?: number,
  ) {
    this.tty = (stream as NodeJS.WriteStream).isTTY === true;
    this.timer = setInterval(() => this.render(), intervalMs ?? (this.tty ? 200 : 5_000));
    this.timer.unref();
  }

  private render(): void {
    const line = progressLine(this.state(), this.tty);
    if (this.tty) {
      this.stream.write(`\r${line}${' '.repeat(Math.max(0, this.lastLength - line.length))}`);
      this.lastLength = line.length;
    } else {
      this.stream.write(`${line}\n`);
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.render();
    if (this.tty) this.stream.write('\n');
  }
}
