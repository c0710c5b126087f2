import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ConsoleDisplay } from '../common/console.js';

/** The process control of `streamgrad run`: its children, their resource use, and the handle `scale` reaches it by. */

/** CPU seconds (user + system) a process has used so far, on Linux; undefined elsewhere. */
export function cpuSecondsOf(pid: number | undefined): number | undefined {
  try {
    // Fields 14 and 15 of /proc/<pid>/stat, after the command name in parentheses, in clock ticks (100/s on Linux).
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}

/** A field of /proc/<pid>/status in kB, as MB, on Linux; undefined elsewhere or once the process has exited. */
function statusMb(pid: number | undefined, field: 'VmHWM' | 'RssFile'): number | undefined {
  try {
    const kb = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb === undefined ? undefined : Number(kb) / 1024;
  } catch {
    return undefined;
  }
}

/** Node options that load code into a process before its main module: a TypeScript loader's. */
const preloadFlags = new Set(['--import', '--require', '-r', '--loader', '--experimental-loader']);

/**
 * `node <this CLI>`: from sources (through the same loader, e.g. tsx) or from `dist/`;
 * STREAMGRAD_CLI names a compiled `cli.js` to start instead (the benchmarks use `dist/`),
 * whose processes carry none of the loader's preloads: tsx's (even its `--require`d preflight)
 * turn on source maps, and Node then parses the map of every module it loads, TensorFlow.js'
 * bundles' included: about 150 MB more per process.
 */
export function cliCommand(execArgv: readonly string[] = process.execArgv, override = process.env.STREAMGRAD_CLI): string[] {
  const flags = execArgv.filter((arg) => !arg.startsWith('--inspect'));
  // Dropped: a preload flag (`--import tsx`, `--import=tsx`) and the value after a bare one.
  if (override) return [...flags.filter((arg, i, all) => !preloadFlags.has(arg.split('=')[0]!) && !preloadFlags.has(all[i - 1] ?? '')), override];
  return [...flags, fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? '../cli.ts' : '../cli.js', import.meta.url))];
}

/** One child process of a run, with its output relayed line by line. */
export interface Child {
  readonly name: string;
  readonly process: ChildProcess;
  readonly exited: Promise<number | null>;
}

/** What the children of a run used: peak memory (MB) and CPU seconds, by child name, where the OS reports them. */
export interface ChildUsage {
  /** Peak resident set size (VmHWM). */
  readonly peakRssMb: Record<string, number>;
  /**
   * Of the resident set when the child was stopped, the pages of files (RssFile): its libraries' code and read-only
   * data (node's, libtensorflow's), which the kernel shares between the processes that map them and can drop.
   */
  readonly fileBackedMb: Record<string, number>;
  readonly cpuSeconds: Record<string, number>;
}

/** How long a stop waits before it says what is still running, and before it kills it. */
const slowStopMs = 15_000;
const killAfterMs = 60_000;

/**
 * The child processes of a run: each a `streamgrad` sub-command on the run's experiment file, its output relayed
 * to the display as `name: line`. A child that exits before {@link stop} is a failure of the run (`onFailure`).
 */
export class RunChildren {
  readonly all: Child[] = [];
  readonly usage: ChildUsage = { peakRssMb: {}, fileBackedMb: {}, cpuSeconds: {} };
  private stopping = false;
  // If this process dies without stopping them, the children still get SIGTERM and drain by themselves.
  private readonly orphanGuard = () => this.all.forEach((child) => child.process.exitCode === null && child.process.kill('SIGTERM'));

  constructor(
    private readonly configFile: string,
    private readonly brokers: readonly string[],
    private readonly display: ConsoleDisplay,
    private readonly onFailure: (error: Error) => void,
  ) {
    process.on('exit', this.orphanGuard);
  }

  spawn(name: string, args: readonly string[]): Child {
    const child = spawn(process.execPath, [...cliCommand(), ...args, '--config', this.configFile], {
      env: { ...process.env, KAFKA_BROKERS: this.brokers.join(',') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    for (const stream of [child.stdout, child.stderr]) this.relay(name, stream);
    const exited = new Promise<number | null>((resolve) =>
      child.on('exit', (code, signal) => {
        if (!this.stopping) this.onFailure(new Error(`${name} exited unexpectedly (${signal ?? `code ${code}`}); stopping the run`));
        resolve(code);
      }),
    );
    const entry = { name, process: child, exited };
    this.all.push(entry);
    return entry;
  }

  /** From now on a child's exit is expected. */
  get isStopping(): boolean {
    return this.stopping;
  }

  beginStop(): void {
    this.stopping = true;
  }

  /** SIGTERM to each of `which` (after noting its resource use), SIGKILL after a minute; resolves once all exited. */
  async stop(which: readonly Child[]): Promise<void> {
    this.stopping = true;
    for (const child of which) {
      const peak = statusMb(child.process.pid, 'VmHWM');
      if (peak !== undefined) this.usage.peakRssMb[child.name] = peak;
      const fileBacked = statusMb(child.process.pid, 'RssFile');
      if (fileBacked !== undefined) this.usage.fileBackedMb[child.name] = fileBacked;
      const cpu = cpuSecondsOf(child.process.pid);
      if (cpu !== undefined) this.usage.cpuSeconds[child.name] = cpu;
      child.process.kill('SIGTERM');
    }
    const running = () => which.filter((child) => child.process.exitCode === null && child.process.signalCode === null).map((child) => child.name);
    const slow = setTimeout(() => {
      const waiting = running();
      if (waiting.length > 0) this.display.log(`still stopping after ${slowStopMs / 1000} s: ${waiting.join(', ')} (SIGKILL at ${killAfterMs / 1000} s; a killed worker or server loses nothing, its successor resumes from the last commit)`);
    }, slowStopMs);
    const killer = setTimeout(() => which.forEach((child) => child.process.kill('SIGKILL')), killAfterMs);
    await Promise.all(which.map((child) => child.exited));
    clearTimeout(slow);
    clearTimeout(killer);
  }

  /** Once every child is stopped: this process no longer needs to stop them on its way out. */
  release(): void {
    process.off('exit', this.orphanGuard);
  }

  private relay(name: string, stream: NodeJS.ReadableStream): void {
    let partial = '';
    stream.on('data', (chunk: Buffer) => {
      const lines = (partial + chunk.toString()).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) if (line.trim()) this.display.relay(name, line);
    });
  }
}

/** Where a running `streamgrad run` can be reached on this machine, for `streamgrad scale --workers`. */
export interface RunHandle {
  readonly pid: number;
  readonly control: string;
}

const handleFile = (namespace: string) => join(tmpdir(), 'streamgrad', `${namespace}.run.json`);

/** The running `streamgrad run` of `namespace` on this machine, if any. */
export function findRun(namespace: string): RunHandle | undefined {
  try {
    const handle = JSON.parse(readFileSync(handleFile(namespace), 'utf8')) as RunHandle;
    process.kill(handle.pid, 0);
    return handle;
  } catch {
    return undefined;
  }
}

/** The most workers one `scale` request may add. */
const maxWorkersPerRequest = 64;

/**
 * The run's control endpoint on loopback (`POST /workers?add=N` adds N workers), announced in the namespace's handle
 * file for `streamgrad scale`. Returns the function that closes it and removes the handle.
 */
export async function serveRunControl(namespace: string, addWorkers: (count: number) => { readonly added: string[]; readonly workers: number }, isStopping: () => boolean): Promise<() => void> {
  const json = (status: number, body: unknown) => [status, { 'content-type': 'application/json' }, JSON.stringify(body)] as const;
  const answer = (method: string | undefined, rawUrl: string | undefined) => {
    const url = new URL(rawUrl ?? '/', 'http://localhost');
    const add = Number(url.searchParams.get('add'));
    if (method !== 'POST' || url.pathname !== '/workers' || !Number.isInteger(add) || add < 1 || add > maxWorkersPerRequest) return json(400, { error: `POST /workers?add=<1..${maxWorkersPerRequest}>` });
    if (isStopping()) return json(409, { error: 'the run is stopping' });
    return json(200, addWorkers(add));
  };
  const control: Server = createServer((request, response) => {
    const [status, headers, body] = answer(request.method, request.url);
    response.writeHead(status, headers).end(body);
  });
  await new Promise<void>((resolve) => control.listen(0, '127.0.0.1', resolve));
  mkdirSync(join(tmpdir(), 'streamgrad'), { recursive: true });
  writeFileSync(handleFile(namespace), JSON.stringify({ pid: process.pid, control: `http://127.0.0.1:${(control.address() as AddressInfo).port}` } satisfies RunHandle));
  return () => {
    control.close();
    rmSync(handleFile(namespace), { force: true });
  };
}
