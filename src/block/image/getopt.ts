/**
 * A getopt_long work-alike for the image tools, so `-f qcow2`, `-fqcow2`, `-qv`, `--output=json`
 * and `--output json` parse exactly as qemu-img and qemu-io parse them. Options stop at `--`;
 * positional arguments may be interleaved with options (GNU permutation).
 */
export interface LongOpt {
  readonly name: string;
  readonly hasArg: boolean;
  /** Key the value is stored under (defaults to the name). */
  readonly key?: string;
}

export interface Parsed {
  readonly opts: Map<string, string[]>;
  readonly positional: string[];
}

export class GetoptError extends Error {
  override readonly name = 'GetoptError';
}

/** `short` is getopt's string: letters, a `:` after each that takes an argument. */
export function getopt(args: readonly string[], short: string, long: readonly LongOpt[] = []): Parsed {
  const opts = new Map<string, string[]>();
  const positional: string[] = [];
  const put = (k: string, v: string): void => {
    const list = opts.get(k);
    if (list === undefined) opts.set(k, [v]);
    else list.push(v);
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      positional.push(...args.slice(i + 1));
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
      const spec = long.find((l) => l.name === name);
      if (spec === undefined) throw new GetoptError(`unrecognized option '${a}'`);
      if (spec.hasArg) {
        let v: string | undefined = eq >= 0 ? a.slice(eq + 1) : args[++i];
        if (v === undefined) throw new GetoptError(`option '--${name}' requires an argument`);
        put(spec.key ?? name, v);
        v = undefined;
      } else {
        if (eq >= 0) throw new GetoptError(`option '--${name}' doesn't allow an argument`);
        put(spec.key ?? name, '');
      }
      continue;
    }
    if (a.startsWith('-') && a.length > 1) {
      for (let j = 1; j < a.length; j++) {
        const c = a[j]!;
        const at = short.indexOf(c);
        if (at < 0 || c === ':') throw new GetoptError(`invalid option -- '${c}'`);
        if (short[at + 1] === ':') {
          const rest = a.slice(j + 1);
          const v = rest.length > 0 ? rest : args[++i];
          if (v === undefined) throw new GetoptError(`option requires an argument -- '${c}'`);
          put(c, v);
          break;
        }
        put(c, '');
      }
      continue;
    }
    positional.push(a);
  }
  return { opts, positional };
}

export function last(p: Parsed, key: string): string | undefined {
  const l = p.opts.get(key);
  return l === undefined ? undefined : l[l.length - 1];
}

export function has(p: Parsed, key: string): boolean {
  return p.opts.has(key);
}

/** Splits a qemu-io command line into words, honouring single and double quotes. */
export function splitWords(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quote: string | null = null;
  let inWord = false;
  for (const ch of line) {
    if (quote !== null) {
      if (ch === quote) quote = null;
      else cur += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      inWord = true;
    } else if (ch === ' ' || ch === '\t') {
      if (inWord) out.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += ch;
      inWord = true;
    }
  }
  if (inWord) out.push(cur);
  return out;
}
