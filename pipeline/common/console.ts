import type { Logger } from 'pino';
import { loggingJson, roleLogger } from './log.js';

/**
 * Log lines and one live progress line on stderr. On a terminal the progress
 * line is redrawn in place, below the log lines; elsewhere (CI, pipes) each
 * progress update is a line of its own.
 */
export class ConsoleDisplay {
  private live = '';
  private readonly tty = process.stderr.isTTY === true;
  /** With `STREAMGRAD_LOG_FORMAT=json`: every line an entry of the process's logger, progress lines too. */
  private readonly json: Logger | undefined;

  /** `prefix`: `[role]`, the role of the lines in JSON. `quiet`: no progress lines, and only the log lines that report an error. */
  constructor(
    private readonly prefix: string,
    private readonly quiet = false,
  ) {
    this.json = loggingJson() ? roleLogger({ role: prefix.replace(/^\[|\]$/g, '') }) : undefined;
  }

  log(line: string): void {
    if (this.quiet && !/error|exited|fail|still stopping/i.test(line)) return;
    if (this.json) return this.json.info(line);
    if (this.tty && this.live) process.stderr.write('\r\x1b[2K');
    process.stderr.write(`${this.prefix} ${line}\n`);
    if (this.tty && this.live) process.stderr.write(this.live);
  }

  /** A line of child process `name`: as `name: line`, or in JSON as it is (the child logs JSON lines itself). */
  relay(name: string, line: string): void {
    if (this.json === undefined) return this.log(`${name}: ${line}`);
    if (line.startsWith('{')) process.stderr.write(`${line}\n`);
    else this.json.info({ child: name }, line);
  }

  progress(line: string): void {
    if (this.quiet) return;
    if (this.json) return this.json.info({ progress: true }, line);
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
