import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** A TypeScript program run as its own Node process (through tsx), with its stdout and stderr lines collected. */
export interface TsChild {
  readonly process: ChildProcess;
  readonly lines: string[];
  /** stderr, line by line (also passed through to this process's stderr). */
  readonly errors: string[];
  /** Resolves with the exit code (or the signal's name) once the process has ended. */
  readonly exited: Promise<number | string>;
}

/** `wrapper`: a command that runs Node for us (it must exec it, so that the child's pid is Node's), such as `ip netns exec NS`. */
export function spawnTs(file: URL, args: readonly string[], options: { env?: Record<string, string>; quiet?: boolean; wrapper?: readonly string[] } = {}): TsChild {
  const command = [...(options.wrapper ?? []), process.execPath, '--import', 'tsx', fileURLToPath(file), ...args];
  const child = spawn(command[0]!, command.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...options.env } });
  const collect = (stream: NodeJS.ReadableStream, into: string[], forward?: (chunk: Buffer) => void) => {
    let partial = '';
    stream.on('data', (chunk: Buffer) => {
      forward?.(chunk);
      const parts = (partial + chunk.toString()).split('\n');
      partial = parts.pop() ?? '';
      into.push(...parts.filter((line) => line.length > 0));
    });
    stream.on('end', () => partial && into.push(partial));
  };
  const lines: string[] = [];
  const errors: string[] = [];
  collect(child.stdout, lines);
  collect(child.stderr, errors, options.quiet ? undefined : (chunk) => process.stderr.write(chunk));
  // 'close' (not 'exit'): every line of output has been read by then.
  const exited = new Promise<number | string>((resolve) => child.on('close', (code, signal) => resolve(code ?? signal ?? -1)));
  runningChildren.add(child);
  void exited.then(() => runningChildren.delete(child));
  return { process: child, lines, errors, exited };
}

/** The children {@link spawnTs} started that have not ended yet. */
const runningChildren = new Set<ChildProcess>();

/**
 * SIGKILLs every child {@link spawnTs} started that still runs (a test that timed out never reaches its own cleanup);
 * returns their pids.
 */
export function killLeftBehindChildren(): number[] {
  const left = [...runningChildren].filter((child) => child.exitCode === null && child.signalCode === null);
  for (const child of left) child.kill('SIGKILL');
  return left.map((child) => child.pid ?? -1);
}

/** The `streamgrad` CLI, run from the sources as a user runs it. */
export const cliPath = new URL('../../pipeline/cli.ts', import.meta.url);

/** Runs `streamgrad <args>` to its end. */
export async function runCli(args: readonly string[], env: Record<string, string> = {}): Promise<{ code: number | string; stdout: string[]; stderr: string[] }> {
  const child = spawnTs(cliPath, args, { env, quiet: true });
  const code = await child.exited;
  return { code, stdout: child.lines, stderr: child.errors };
}

/** Runs `streamgrad <args>` and returns its stdout lines; fails the test, with its stderr, unless it exits 0. */
export async function cliOutput(args: readonly string[], env: Record<string, string> = {}): Promise<string[]> {
  const { code, stdout, stderr } = await runCli(args, env);
  if (code !== 0) throw new Error(`streamgrad ${args.join(' ')} exited with ${code}:\n${stderr.join('\n')}`);
  return stdout;
}

/** What `answer` resolves to, or `late` if it has not answered within `ms` (a request to a broker that went away). */
export async function answerWithin<T, L>(answer: Promise<T>, ms: number, late: L): Promise<T | L> {
  let timer: NodeJS.Timeout | undefined;
  const unanswered = new Promise<L>((resolve) => (timer = setTimeout(() => resolve(late), ms)));
  try {
    return await Promise.race([answer, unanswered]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Polls `condition` every `everyMs` until it holds, or fails after `timeoutMs` with `what`. A check that does not
 * answer by the deadline (an admin request to a broker that went away) fails it too, instead of holding the test until
 * its own timeout.
 */
export async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 60_000, everyMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    // A condition that throws (say, a coordinator still being elected) counts as not yet true.
    const held = await answerWithin(Promise.resolve().then(condition).catch(() => false), Math.max(0, deadline - Date.now()) + everyMs, 'unanswered' as const);
    if (held === true) return;
    if (held === 'unanswered' || Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${held === 'unanswered' ? ' (its last check did not answer)' : ''}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
