import { parentPort, workerData } from 'node:worker_threads';
import { Campaign, batchSeed } from './campaign.js';

/** A fuzz worker: runs batches of its own shard until told to stop, reporting each batch. */
interface WorkerConfig {
  readonly seed: number;
  readonly shard: number;
  readonly shards: number;
  readonly legacy: boolean;
}

const config = workerData as WorkerConfig;
const campaign = new Campaign(config.legacy);
let stop = false;
parentPort?.on('message', (message: unknown) => {
  if (message === 'stop') stop = true;
});

async function loop(): Promise<void> {
  for (let batch = 0; !stop; batch++) {
    const result = campaign.runBatch(batchSeed(config.seed, config.shard, config.shards, batch));
    parentPort?.postMessage(result);
    // Let the 'stop' message in between batches.
    await new Promise((resolve) => setImmediate(resolve));
  }
  campaign.close();
  parentPort?.postMessage('done');
}

void loop();
