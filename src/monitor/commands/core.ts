import { type CommandDef, type CommandTable, QMP_VERSION, defineCommand } from '../command.js';
import { enumOf, listOf, struct } from '../schema.js';

/** The QMPCapability enum: only `oob` exists. */
const capabilityList = listOf(enumOf('oob'));

/** Commands every VM has: negotiation, version, status, run control. */
export function coreCommands(table: CommandTable): CommandDef[] {
  return [
    // Reached only through the negotiation path of the server; listed so query-commands shows it.
    defineCommand<{ enable?: string[] }>({ name: 'qmp_capabilities', args: struct({ 'enable?': capabilityList }), run: () => ({}) }),
    defineCommand({ name: 'query-version', args: null, run: () => ({ qemu: { ...QMP_VERSION.qemu }, package: QMP_VERSION.package }) }),
    defineCommand({ name: 'query-commands', args: null, run: () => table.names().map((name) => ({ name })) }),
    defineCommand({
      name: 'query-status',
      args: null,
      run: ({ vm }) => ({ status: vm.runState.status, singlestep: false, running: vm.runState.running }),
    }),
    defineCommand({ name: 'stop', args: null, run: ({ vm }) => vm.runState.stop() }),
    defineCommand({ name: 'cont', args: null, run: ({ vm }) => vm.runState.cont() }),
    defineCommand({
      name: 'system_reset',
      args: null,
      run: ({ vm }) => {
        vm.resetMachine();
        vm.runState.reset(false, 'host-qmp-system-reset');
      },
    }),
    defineCommand({
      name: 'quit',
      args: null,
      run: ({ vm }) => {
        vm.runState.shutdown(false, 'host-qmp-quit');
        vm.requestQuit();
      },
    }),
  ];
}
