import { defineTest } from './lib/test-api.js';
import { errorPolicyRun } from './lib/error-policy.js';

// on-source-error=report with a source read that fails once.
export default defineTest({
  groups: ['jobs', 'errors', 'backup'],
  run: (t) => errorPolicyRun(t, 'report'),
});
