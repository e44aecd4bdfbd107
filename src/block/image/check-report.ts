/** How qemu-img check prints a result (human and JSON) and which exit code it returns. */
import type { CheckResult } from '../qcow2/check.js';
import type { Json } from './json.js';
import { cFixed } from './size.js';

function pct(n: number, d: number): string {
  return cFixed(d === 0 ? 0 : (n * 100) / d, 2);
}

/** The summary block (dump_human_image_check). */
export function checkHuman(r: CheckResult): string {
  const out: string[] = [];
  if (r.corruptions === 0 && r.leaks === 0 && r.checkErrors === 0) {
    out.push('No errors were found on the image.');
  } else {
    if (r.corruptions > 0) out.push('', `${r.corruptions} errors were found on the image.`, 'Data may be corrupted, or further writes to the image may corrupt it.');
    if (r.leaks > 0) out.push('', `${r.leaks} leaked clusters were found on the image.`, 'This means waste of disk space, but no harm to data.');
    if (r.checkErrors > 0) out.push('', `${r.checkErrors} internal errors have occurred during the check.`);
  }
  if (r.totalClusters !== 0 && r.allocatedClusters !== 0) {
    out.push(
      `${r.allocatedClusters}/${r.totalClusters} = ${pct(r.allocatedClusters, r.totalClusters)}% allocated, ${pct(r.fragmentedClusters, r.allocatedClusters)}% fragmented, ${pct(r.compressedClusters, r.allocatedClusters)}% compressed clusters`,
    );
  }
  if (r.imageEndOffset !== 0) out.push(`Image end offset: ${r.imageEndOffset}`);
  return out.join('\n');
}

/** The "found and repaired" block printed before the double check. */
export function repairedHuman(leaksFixed: number, corruptionsFixed: number): string {
  return `The following inconsistencies were found and repaired:\n\n    ${leaksFixed} leaked clusters\n    ${corruptionsFixed} corruptions\n\nDouble checking the fixed image now...`;
}

/** ImageCheck as JSON, with the optional members only when QEMU sets them. */
export function checkJsonObject(r: CheckResult, filename: string, format: string, fixed: { leaks: number; corruptions: number } | null): { [k: string]: Json | undefined } {
  return {
    'image-end-offset': r.imageEndOffset !== 0 ? r.imageEndOffset : undefined,
    'total-clusters': r.totalClusters !== 0 ? r.totalClusters : undefined,
    'corruptions': r.corruptions !== 0 ? r.corruptions : undefined,
    'check-errors': r.checkErrors,
    'leaks': r.leaks !== 0 ? r.leaks : undefined,
    'corruptions-fixed': fixed !== null && fixed.corruptions !== 0 ? fixed.corruptions : undefined,
    'leaks-fixed': fixed !== null && fixed.leaks !== 0 ? fixed.leaks : undefined,
    'allocated-clusters': r.allocatedClusters !== 0 ? r.allocatedClusters : undefined,
    'fragmented-clusters': r.fragmentedClusters !== 0 ? r.fragmentedClusters : undefined,
    'compressed-clusters': r.compressedClusters !== 0 ? r.compressedClusters : undefined,
    'filename': filename,
    'format': format,
  };
}

/** 0 clean, 1 check could not complete, 2 corruptions, 3 leaks only. */
export function checkExitCode(r: CheckResult): number {
  if (r.checkErrors > 0) return 1;
  if (r.corruptions > 0) return 2;
  if (r.leaks > 0) return 3;
  return 0;
}
