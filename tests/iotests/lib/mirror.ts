import type { IoTestContext, Vm } from './test-api.js';
import { addQcow2, guestIo } from './helpers.js';

/** A qcow2 source with data and an empty qcow2 target, both attached. */
export async function mirrorPair(t: IoTestContext, size = '4M'): Promise<Vm> {
  await t.img.create('qcow2', t.path('src.qcow2'), size);
  await t.img.create('qcow2', t.path('tgt.qcow2'), size);
  const vm = await t.launchVm();
  await addQcow2(vm, 'src', t.path('src.qcow2'));
  await addQcow2(vm, 'tgt', t.path('tgt.qcow2'));
  await guestIo(t, vm, 'src', 'write -P 0x77 0 256k');
  await guestIo(t, vm, 'src', 'write -P 0x78 3M 64k');
  return vm;
}
