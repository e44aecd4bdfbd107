import { realpathSync } from 'node:fs';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { QmpError } from './errors.js';

/**
 * `--allow-path DIR`: confines every file name QMP or the command line may open. A name is allowed
 * when, after resolving `..` and following every symlink that exists, it lies inside one of the
 * allowed trees. Nothing is opened to decide (only `realpath` of the existing part of the path).
 * With no `--allow-path` at all, every path is allowed (QEMU's behaviour).
 */
export class PathPolicy {
  private readonly roots: string[];

  constructor(
    roots: readonly string[],
    private readonly cwd: string,
  ) {
    this.roots = roots.map((root) => canonical(resolve(cwd, root)));
  }

  get confined(): boolean {
    return this.roots.length > 0;
  }

  get allowed(): readonly string[] {
    return this.roots;
  }

  /** Throws a GenericError when `filename` is outside every allowed tree. */
  check(filename: string): void {
    if (!this.confined) return;
    if (filename.includes('\0')) throw new QmpError(`Could not open '${filename}': Permission denied`);
    const absolute = resolve(this.cwd, filename);
    const real = canonical(absolute);
    const inside = this.roots.some((root) => {
      const rel = relative(root, real);
      return rel === '' || (!rel.startsWith('..' + sep) && rel !== '..' && !isAbsolute(rel));
    });
    if (!inside) throw new QmpError(`Could not open '${filename}': path is outside the allowed directories (--allow-path)`);
  }
}

/** realpath of the longest existing prefix, with the rest appended (a file about to be created). */
function canonical(path: string): string {
  let head = path;
  const tail: string[] = [];
  for (let guard = 0; guard < 4096; guard++) {
    try {
      const real = realpathSync(head);
      return tail.length === 0 ? real : resolve(real, ...tail.reverse());
    } catch {
      const parent = resolve(head, '..');
      if (parent === head) break;
      tail.push(head.slice(parent.length + (parent.endsWith(sep) ? 0 : 1)));
      head = parent;
    }
  }
  return path;
}
