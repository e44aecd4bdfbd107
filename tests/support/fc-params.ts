/**
 * fast-check parameters that reproduce a failure: FC_SEED and FC_PATH when set, nothing
 * otherwise, so the fixed global seed of tests/support/fc-global.ts applies (an explicit
 * `seed: undefined` would make fast-check pick a random one).
 */
export function fcReplayParams(): { seed?: number; path?: string } {
  const params: { seed?: number; path?: string } = {};
  const seed = process.env.FC_SEED;
  if (seed !== undefined && seed !== '' && seed !== 'random') params.seed = Number(seed);
  if (process.env.FC_PATH !== undefined && process.env.FC_PATH !== '') params.path = process.env.FC_PATH;
  return params;
}
