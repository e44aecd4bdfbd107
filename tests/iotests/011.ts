import { defineTest } from './lib/test-api.js';
import { bitmapModeCell } from './lib/bitmap-matrix.js';

// sync=bitmap with bitmap-mode=on-success when the job ends in: success.
export default defineTest({
  groups: ['backup', 'bitmap'],
  run: (t) => bitmapModeCell(t, 'on-success', 'success'),
});
