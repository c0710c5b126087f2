/**
 * Log lines and one live progress line on stderr. On a terminal the progress
 * line is redrawn in place, below the log lines; elsewhere (CI, pipes) each
 * progress update is a line of its own.
 */
export class ConsoleDisplay {
  private live = '';
  private readonly tty = process.stderr.isTTY === true;

  /** `quiet`: no progress lines, and only the log lines that report an error. */
  constructor(
    private readonly prefix: string,
    private readonly quiet = false,
  ) {}

  log(line: string): void {
    if (this.quiet && !/error|exited|fail|still stopping/i.test(line)) return;
    if (this.tty && this.live) process.stderr.write('\r\x1b[2K');
    process.stderr.write(`${this.prefix} ${line}\n`);
    if (this.tty && this.live) process.stderr.write(this.live);
  }

  progress(line: string): void {
    if (this.quiet) return;
    if (!this.tty) {
      process.stderr.write(`${this.prefix} ${line}\n`);
      return;
    }
    this.live = `${this.prefix} ${line}`;
    process.stderr.write(`\r\x1b[2K${this.live}`);
  }

  /** Ends the live line, so what follows starts on a line of its own. */
  done(): void {
    if (this.tty && this.live) process.stderr.write('\n');
    this.live = '';
  }
}

/** A count as people read it: rounded, with thousands separators (1,234,567). */
export function formatCount(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}
