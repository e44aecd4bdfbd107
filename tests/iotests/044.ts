import { defineTest } from './lib/test-api.js';
import { errorPolicyRun } from './lib/error-policy.js';

// on-source-error=ignore with a source read that fails once.
export default defineTest({
  groups: ['jobs', 'errors', 'backup'],
  run: (t) => errorPolicyRun(t, 'ignore'),
});
