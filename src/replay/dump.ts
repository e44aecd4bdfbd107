/**
 * Human views of a log: `info` (header, duration, input counts by kind), `dump` (records
 * interleaved, one per line) and an HTML timeline (virtual time across, one lane per input
 * channel, device, IRQ or job; scrollable).
 */
import type { LoggedRecord, ParsedLog } from './log-format.js';
import { eventLane } from './machine.js';
import { formatData } from './player.js';

export function formatInfo(log: ParsedLog, path: string): string {
  const h = log.header;
  const last = log.records[log.records.length - 1];
  const counts = new Map<string, number>();
  let checkpoints = 0;
  let events = 0;
  for (const r of log.records) {
    if (r.type === 'input') counts.set(r.kind, (counts.get(r.kind) ?? 0) + 1);
    else if (r.type === 'checkpoint') checkpoints++;
    else if (r.type === 'event') events++;
  }
  const inputs = [...counts.values()].reduce((a, b) => a + b, 0);
  const lines = [
    `log:          ${path} (${log.sizeBytes} bytes, ${log.records.length} records)`,
    `status:       ${log.complete ? 'complete' : `cut short${log.tail !== null ? ` at offset ${log.tail.offset}: ${log.tail.reason}` : ' (no end record)'}`}`,
    `tsqemu:       ${h.tsqemuVersion}`,
    `machine:      ${h.machine} (config digest ${h.machineDigest}), seed ${h.seed}, icount shift ${h.icountShift}`,
    `command line: ${h.commandLine.join(' ')}`,
    ...h.disks.map((d) => `disk:         ${d.name} ${d.path} ${d.sizeBytes} bytes, digest ${d.digest}`),
    `duration:     ${last?.icount ?? 0} instructions, ${last?.ns ?? 0} ns virtual, ${last?.step ?? 0} main-loop steps`,
    `inputs:       ${inputs}${inputs > 0 ? ` (${[...counts].map(([k, n]) => `${k} ${n}`).join(', ')})` : ''}, ${inputs > 0 ? (log.sizeBytes / inputs).toFixed(1) : '-'} log bytes per input`,
    `checkpoints:  ${checkpoints} every ${h.checkpointInterval} ${h.checkpointUnit === 'icount' ? 'instructions' : 'steps'}`,
    `events:       ${h.events ? events : 'not recorded'}`,
  ];
  const end = log.records.find((r) => r.type === 'end');
  if (end !== undefined && end.type === 'end') lines.push(`end:          ${end.reason}, trace digest ${end.trace}`);
  return lines.join('\n');
}

export function formatRecord(r: LoggedRecord): string {
  const at = `${String(r.icount).padStart(12)} ${String(r.ns).padStart(14)}ns ${String(r.step).padStart(8)}`;
  switch (r.type) {
    case 'input':
      return `${at}  input      ${r.kind} '${r.channel}' ${formatData(r.data)}`;
    case 'checkpoint': {
      const parts = Object.entries(r.state).map(([probe, entries]) => `${probe}:${Object.keys(entries).length}`);
      return `${at}  checkpoint #${r.index} trace ${r.trace} (${parts.join(' ')})`;
    }
    case 'event':
      return `${at}  event      ${r.name} ${Object.entries(r.fields).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(' ')}`;
    case 'end':
      return `${at}  end        ${r.reason} trace ${r.trace} inputs ${r.inputs}`;
  }
}

export function formatDump(log: ParsedLog, withEvents: boolean): string {
  const lines = [`${'icount'.padStart(12)} ${'virtual ns'.padStart(16)} ${'step'.padStart(8)}  record`];
  for (const r of log.records) if (withEvents || r.type !== 'event') lines.push(formatRecord(r));
  if (log.tail !== null) lines.push(`-- log cut at offset ${log.tail.offset}: ${log.tail.reason}`);
  return lines.join('\n');
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
}

/** Bound on marks drawn, so a huge log still gives a page a browser can open. */
const MAX_MARKS = 200_000;

/** A self-contained HTML page: virtual time across, one lane per input channel/device/IRQ/job. */
export function formatHtmlTimeline(log: ParsedLog, title: string): string {
  const lanes = new Map<string, number>();
  const laneOf = (name: string): number => {
    let index = lanes.get(name);
    if (index === undefined) {
      index = lanes.size;
      lanes.set(name, index);
    }
    return index;
  };
  laneOf('checkpoints');
  const lastNs = Math.max(1, ...log.records.slice(-1).map((r) => r.ns));
  const widthPx = Math.min(200_000, Math.max(1200, log.records.length * 6));
  const marks: string[] = [];
  for (const r of log.records.slice(0, MAX_MARKS)) {
    let lane: number;
    let label: string;
    let cls: string;
    if (r.type === 'input') {
      lane = laneOf(`input ${r.channel}`);
      label = `${r.kind} ${formatData(r.data)}`;
      cls = 'in';
    } else if (r.type === 'checkpoint') {
      lane = 0;
      label = `checkpoint #${r.index}`;
      cls = 'cp';
    } else if (r.type === 'event') {
      lane = laneOf(eventLane(r.name, r.fields));
      label = `${r.name} ${JSON.stringify(r.fields)}`;
      cls = 'ev';
    } else {
      lane = 0;
      label = `end: ${r.reason}`;
      cls = 'end';
    }
    const x = Math.round((r.ns / lastNs) * (widthPx - 20));
    marks.push(`<div class="m ${cls}" style="left:${x}px;top:${lane * 28 + 4}px" title="${escapeHtml(`${label}\nicount ${r.icount}, ${r.ns} ns, step ${r.step}`)}"></div>`);
  }
  const laneRows = [...lanes.keys()].map((name, i) => `<div class="lane" style="top:${i * 28}px">${escapeHtml(name)}</div>`).join('');
  return `<!doctype html><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<style>body{font:12px monospace;margin:8px}#names{position:absolute;left:8px;width:180px}#wrap{margin-left:190px;overflow-x:scroll;position:relative;height:${lanes.size * 28 + 30}px;border:1px solid #ccc}
#track{position:relative;width:${widthPx}px;height:${lanes.size * 28}px}.lane{position:absolute;height:28px;line-height:28px;white-space:nowrap}
.m{position:absolute;width:4px;height:20px}.in{background:#1f77b4}.cp{background:#2ca02c}.ev{background:#ff7f0e}.end{background:#d62728;width:6px}</style>
<h3>${escapeHtml(title)}: ${log.records.length} records, ${lastNs} ns virtual time (hover a mark for details)</h3>
<div style="position:relative"><div id="names">${laneRows}</div><div id="wrap"><div id="track">${marks.join('')}</div></div></div>
`;
}
