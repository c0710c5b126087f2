import { execFileSync } from 'node:child_process';

/**
 * A network namespace of the test's own, joined to this host by a veth pair: a second "machine" whose link the test
 * can cut. The host end has `hostAddress` (a broker that should reach it listens there); processes started through
 * `wrapper` live in the namespace and reach nothing but `hostAddress`. Needs root and iproute2 (`ip netns`).
 */
export class IsolatedHost {
  readonly name: string;
  readonly hostAddress: string;
  readonly address: string;
  private readonly hostEnd: string;
  private readonly end: string;

  /** `id`: 1–250, unique among the hosts alive at once on this machine (a test picks it from its pid). */
  constructor(id: number) {
    if (!Number.isInteger(id) || id < 1 || id > 250) throw new Error(`an isolated host's id must be 1–250, got ${id}`);
    this.name = `streamgrad-z${id}`;
    this.hostEnd = `sgzh${id}`;
    this.end = `sgzn${id}`;
    this.hostAddress = `10.231.${id}.1`;
    this.address = `10.231.${id}.2`;
  }

  /** Whether this machine lets us make network namespaces (root, with iproute2), and why not. */
  static unavailable(): string | undefined {
    if (process.getuid?.() !== 0) return 'making a network namespace needs root';
    try {
      execFileSync('ip', ['netns', 'list'], { stdio: 'ignore' });
      return undefined;
    } catch (error) {
      return `'ip netns' does not work here: ${(error as Error).message}`;
    }
  }

  /** Makes the namespace and the veth pair, with the link up. A leftover of an earlier run with this id goes first. */
  create(): void {
    this.remove();
    const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    ip('netns', 'add', this.name);
    ip('link', 'add', this.hostEnd, 'type', 'veth', 'peer', 'name', this.end);
    ip('link', 'set', this.end, 'netns', this.name);
    ip('addr', 'add', `${this.hostAddress}/30`, 'dev', this.hostEnd);
    ip('link', 'set', this.hostEnd, 'up');
    ip('netns', 'exec', this.name, 'ip', 'addr', 'add', `${this.address}/30`, 'dev', this.end);
    ip('netns', 'exec', this.name, 'ip', 'link', 'set', 'lo', 'up');
    this.connect();
  }

  /** The command prefix that runs a program inside the namespace. */
  get wrapper(): readonly string[] {
    return ['ip', 'netns', 'exec', this.name];
  }

  /** Link down: the namespace's connections to the host fail, and new ones cannot be made. */
  cut(): void {
    execFileSync('ip', ['netns', 'exec', this.name, 'ip', 'link', 'set', this.end, 'down'], { stdio: ['ignore', 'ignore', 'pipe'] });
  }

  /** Link up again (the kernel restores the route with it). */
  connect(): void {
    execFileSync('ip', ['netns', 'exec', this.name, 'ip', 'link', 'set', this.end, 'up'], { stdio: ['ignore', 'ignore', 'pipe'] });
  }

  /** Deletes the namespace (its end of the pair goes with it, and the host end with that). Safe to call twice. */
  remove(): void {
    try {
      execFileSync('ip', ['netns', 'delete', this.name], { stdio: 'ignore' });
    } catch {
      // There was none.
    }
    try {
      execFileSync('ip', ['link', 'delete', this.hostEnd], { stdio: 'ignore' });
    } catch {
      // It went with the namespace.
    }
  }
}
