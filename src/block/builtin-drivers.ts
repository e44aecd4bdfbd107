import { blkdebugDriver } from './drivers/blkdebug.js';
import { copyBeforeWriteDriver } from './drivers/copy-before-write.js';
import { fileDriver } from './drivers/file.js';
import { nullAioDriver, nullCoDriver } from './drivers/null.js';
import { rawDriver } from './drivers/raw.js';
import { snapshotOverlayDriver } from './drivers/snapshot-overlay.js';
import { throttleDriver } from './drivers/throttle.js';
import { registerDriver } from './registry.js';

// The drivers of src/block itself. qcow2 registers itself from src/block/qcow2.
for (const drv of [fileDriver, rawDriver, nullCoDriver, nullAioDriver, blkdebugDriver, copyBeforeWriteDriver, throttleDriver, snapshotOverlayDriver]) registerDriver(drv);
