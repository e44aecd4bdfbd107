import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MainLoop } from '../../src/engine/main-loop.js';
import { BlockGraph } from '../../src/block/graph.js';
import '../../src/block/qcow2/driver.js';
import { JobManager } from '../../src/blockjob/job.js';
import { runTransaction } from '../../src/blockjob/transaction.js';
import { blockDirtyBitmapAdd } from '../../src/blockjob/bitmap-actions.js';
import type { BenchCase, BenchResult } from './types.js';

const MiB = 1 << 20;

interface Machine {
  loop: MainLoop;
  graph: BlockGraph;
  jobs: JobManager;
}

function machine(): Machine {
  const loop = new MainLoop();
  return { loop, graph: new BlockGraph(loop), jobs: new JobManager(loop) };
}

/** Runs one full backup src → tgt to completion; returns wall MB/s and the virtual seconds it took. */
function backupRate(m: Machine, bytes: number): { mbPerSecond: number; virtualSeconds: number } {
  const start = performance.now();
  const virtualStart = m.loop.nowNs;
  runTransaction({ jobs: m.jobs, graph: m.graph }, [{ type: 'blockdev-backup', data: { 'device': 'src', 'target': 'tgt', 'sync': 'full', 'job-id': 'bench' } }]);
  m.loop.runUntilIdle();
  const ms = performance.now() - start;
  if (m.jobs.get('bench') !== undefined) throw new Error('backup did not finish');
  return { mbPerSecond: bytes / MiB / (ms / 1000), virtualSeconds: (m.loop.nowNs - virtualStart) / 1e9 };
}

function nullCoBackup(): BenchResult {
  const m = machine();
  const size = 1024 * MiB;
  m.graph.blockdevAdd({ 'driver': 'null-co', 'node-name': 'src', size });
  m.graph.blockdevAdd({ 'driver': 'null-co', 'node-name': 'tgt', size });
  const { mbPerSecond } = backupRate(m, size);
  return { name: 'backup 1 GiB null-co -> null-co', value: mbPerSecond, unit: 'MB/s', note: 'wall time, sync=full, 64 workers' };
}

function writePattern(path: string, bytes: number): void {
  const fd = openSync(path, 'w');
  const chunk = new Uint8Array(MiB);
  try {
    for (let off = 0; off < bytes; off += MiB) {
      for (let i = 0; i < MiB; i += 4096) chunk[i] = (off / MiB + i) & 0xff;
      writeSync(fd, chunk);
    }
  } finally {
    closeSync(fd);
  }
}

function haveQemuImg(): boolean {
  try {
    execFileSync('qemu-img', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function fileBackups(): BenchResult[] {
  const dir = mkdtempSync(join(tmpdir(), 'tsqemu-bench-jobs-'));
  const size = 256 * MiB;
  const out: BenchResult[] = [];
  try {
    writePattern(join(dir, 'src.raw'), size);
    writePattern(join(dir, 'tgt.raw'), size);
    const m = machine();
    m.graph.blockdevAdd({ 'driver': 'raw', 'node-name': 'src', 'file': { driver: 'file', filename: join(dir, 'src.raw') } });
    m.graph.blockdevAdd({ 'driver': 'raw', 'node-name': 'tgt', 'file': { driver: 'file', filename: join(dir, 'tgt.raw') } });
    out.push({ name: 'backup 256 MiB raw file -> raw file', value: backupRate(m, size).mbPerSecond, unit: 'MB/s', note: 'wall time, sync=full' });
    if (haveQemuImg()) {
      execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', join(dir, 'src.raw'), join(dir, 'src.qcow2')]);
      execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', join(dir, 'tgt.qcow2'), String(size)]);
      const q = machine();
      q.graph.blockdevAdd({ 'driver': 'qcow2', 'node-name': 'src', 'file': { driver: 'file', filename: join(dir, 'src.qcow2') } });
      q.graph.blockdevAdd({ 'driver': 'qcow2', 'node-name': 'tgt', 'file': { driver: 'file', filename: join(dir, 'tgt.qcow2') } });
      out.push({ name: 'backup 256 MiB qcow2 -> qcow2', value: backupRate(q, size).mbPerSecond, unit: 'MB/s', note: 'wall time, sync=full' });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return out;
}

/** One empty-backup transaction scenario at the job layer: fresh machine, clean bitmap, whole job life. */
function emptyBackupScenario(): void {
  const m = machine();
  m.graph.blockdevAdd({ 'driver': 'null-co', 'node-name': 'src', 'size': 64 * MiB });
  m.graph.blockdevAdd({ 'driver': 'null-co', 'node-name': 'tgt', 'size': 64 * MiB });
  const env = { jobs: m.jobs, graph: m.graph };
  blockDirtyBitmapAdd(env, { node: 'src', name: 'b0' });
  runTransaction(env, [{ type: 'blockdev-backup', data: { 'device': 'src', 'target': 'tgt', 'sync': 'incremental', 'bitmap': 'b0', 'job-id': 'j' } }]);
  m.loop.runUntilIdle();
  if (m.jobs.jobs.length !== 0) throw new Error('empty backup did not finish');
}

function emptyScenarios(): BenchResult {
  for (let i = 0; i < 200; i++) emptyBackupScenario();
  const start = performance.now();
  let n = 0;
  while (performance.now() - start < 1000) {
    emptyBackupScenario();
    n++;
  }
  return { name: 'empty-backup transaction scenarios (job layer)', value: (n / (performance.now() - start)) * 1000, unit: 'scenarios/s', note: 'fresh loop+graph+nodes+bitmap each' };
}

/** A rate-limited job costs virtual time only: 1 GiB at 1 GiB/s... reported as wall ms for 1024 virtual s. */
function rateLimited(): BenchResult {
  const m = machine();
  const size = 1024 * MiB;
  m.graph.blockdevAdd({ 'driver': 'null-co', 'node-name': 'src', size });
  m.graph.blockdevAdd({ 'driver': 'null-co', 'node-name': 'tgt', size });
  const start = performance.now();
  runTransaction({ jobs: m.jobs, graph: m.graph }, [{ type: 'blockdev-backup', data: { 'device': 'src', 'target': 'tgt', 'sync': 'full', 'job-id': 'slow', 'speed': MiB } }]);
  m.loop.runUntilIdle();
  const ms = performance.now() - start;
  return { name: 'backup 1 GiB at speed 1 MiB/s', value: ms, unit: 'ms wall', note: `${(m.loop.nowNs / 1e9).toFixed(0)} virtual s` };
}

export const jobsBench: BenchCase = {
  name: 'block jobs',
  group: 'jobs',
  run: () => [nullCoBackup(), ...fileBackups(), emptyScenarios(), rateLimited()],
};

export const benchCases: BenchCase[] = [jobsBench];
