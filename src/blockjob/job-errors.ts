/** QMP error classes a job refusal can carry. */
export type QmpErrorClass = 'GenericError' | 'DeviceNotActive' | 'DeviceNotFound';

/**
 * A user error from the job layer (a refused verb, a bad argument, an unknown job): the QMP layer
 * answers it as `{error: {class, desc}}`. Nothing has changed when one is thrown.
 */
export class JobError extends Error {
  override readonly name = 'JobError';

  constructor(
    message: string,
    readonly errorClass: QmpErrorClass = 'GenericError',
  ) {
    super(message);
  }
}

export { Errno, strerror } from '../block/errno.js';
