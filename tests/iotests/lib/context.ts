import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { applyFilters, filterPath, filterTimestamps, qemuJson, type Filter } from './format.js';
import type { ImageTools, IoTestContext, Vm } from './test-api.js';

/** How to reach the programs of a target. */
export interface TargetTools {
  readonly target: 'tsqemu' | 'qemu';
  /** Starts a VM. */
  launchVm(dir: string, args: readonly string[], log: (value: unknown) => void, seed: number, options?: { legacyStartInPrepare?: boolean }): Promise<Vm>;
  /** argv prefix for qemu-img / tsqemu-img and qemu-io / tsqemu-io. */
  readonly img: readonly string[];
  readonly io: readonly string[];
}

const TOOL_TIMEOUT_MS = 60_000;

/** Builds the context a test runs with, collecting everything it logs into `out`. */
export function makeContext(tools: TargetTools, dir: string, seed: number, out: string[]): { context: IoTestContext; vms: Vm[] } {
  const pathFilter = filterPath(dir);
  const log = (value: unknown, filters: readonly Filter[] = []) => {
    const filtered = applyFilters(value, [filterTimestamps, pathFilter, ...filters]);
    out.push(typeof filtered === 'string' ? filtered : qemuJson(filtered));
  };
  const run = (argv: readonly string[]) => {
    const [cmd, ...rest] = argv;
    const result = spawnSync(cmd!, rest, { encoding: 'utf8', timeout: TOOL_TIMEOUT_MS });
    if (result.error) throw result.error;
    return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
  };
  const scrub = (text: string) => text.split(dir).join('TEST_DIR');
  const img: ImageTools = {
    async create(format, path, size, options = {}) {
      const argv = [...tools.img, 'create', '-q', '-f', format];
      if (options.backing !== undefined) argv.push('-b', options.backing, '-F', options.backingFormat ?? 'qcow2');
      if (options.opts !== undefined) argv.push('-o', options.opts);
      argv.push(path, size);
      const result = run(argv);
      if (result.status !== 0) throw new Error(`img create failed: ${result.stderr}`);
    },
    async check(path, format = 'qcow2') {
      const result = run([...tools.img, 'check', '-f', format, path]);
      for (const line of scrub(result.stdout + result.stderr).split('\n')) {
        // Keep the verdict lines; the allocation statistics line depends on the writer's layout.
        if (line.trim() !== '' && !/allocated clusters|fragmented|compressed clusters|Image end offset/.test(line)) out.push(line.trimEnd());
      }
      return result.status;
    },
    async compare(a, b) {
      const result = run([...tools.img, 'compare', a, b]);
      out.push(scrub(result.stdout + result.stderr).trim());
      return result.status;
    },
    async info(path) {
      const result = run([...tools.img, 'info', '--output=json', path]);
      if (result.status !== 0) throw new Error(`img info failed: ${result.stderr}`);
      return JSON.parse(result.stdout) as Record<string, unknown>;
    },
  };
  const vms: Vm[] = [];
  const context: IoTestContext = {
    target: tools.target,
    seed,
    dir,
    path: (name) => join(dir, name),
    async launchVm(options = {}) {
      const vm = await tools.launchVm(dir, options.args ?? [], (value) => log(value), seed, { legacyStartInPrepare: options.legacyStartInPrepare });
      vms.push(vm);
      return vm;
    },
    img,
    async io(path, commands, format = 'qcow2') {
      const argv = [...tools.io, '-f', format];
      for (const command of commands) argv.push('-c', command);
      argv.push(path);
      const result = run(argv);
      // The timing line differs run to run: QEMU's iotests filter it the same way.
      const text = scrub(result.stdout + result.stderr)
        .split('\n')
        .map((line) => line.replace(/^(\S+ \S+, \d+ ops?); .*$/, '$1; XX ops/sec (XXX YYY/sec and XXX ops/sec)'))
        .join('\n')
        .trimEnd();
      if (text !== '') out.push(text);
      return text;
    },
    log,
  };
  return { context, vms };
}
