import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Drives a script asks for with `# requires: drive`: one zeroed 64 KiB raw image in `where`. */
export function scriptDrives(text: string, where: string): string[] {
  if (!/^# requires: drive$/m.test(text)) return [];
  const path = join(where, 'drive0.raw');
  writeFileSync(path, new Uint8Array(64 * 1024));
  return [path];
}
