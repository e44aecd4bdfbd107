// `npm test`: build, vitest (unit, property, differential, boot, replay, qtest), then the
// iotests in process and, when QEMU is installed, the same iotests against real QEMU 7.2.
import { spawnSync } from 'node:child_process';

function run(cmd, args) {
  console.log(`\n$ ${[cmd, ...args].join(' ')}`);
  const result = spawnSync(cmd, args, { stdio: 'inherit' });
  if (result.status !== 0) process.exit(result.status ?? 1);
}

function have(program) {
  return spawnSync('sh', ['-c', `command -v ${program}`], { stdio: 'ignore' }).status === 0;
}

run(process.execPath, ['scripts/build.mjs']);
run('npx', ['vitest', 'run']);
run(process.execPath, ['dist/tools/tsqemu-iotests.js']);
if (have('qemu-system-riscv64') && have('qemu-img') && have('qemu-io')) {
  run(process.execPath, ['dist/tools/tsqemu-iotests.js', '--binary', 'qemu-system-riscv64', '--img', 'qemu-img', '--io', 'qemu-io']);
} else {
  console.log('\niotests against QEMU skipped: qemu-system-riscv64, qemu-img or qemu-io is not installed (apt-get install qemu-system-misc qemu-utils)');
}
