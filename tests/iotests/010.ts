import { defineTest } from './lib/test-api.js';
import { bitmapModeCell } from './lib/bitmap-matrix.js';

// sync=bitmap with bitmap-mode=never when the job ends in: read-error.
export default defineTest({
  groups: ['backup', 'bitmap', 'errors'],
  run: (t) => bitmapModeCell(t, 'never', 'read-error'),
});
