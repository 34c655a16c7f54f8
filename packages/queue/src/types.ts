import type { Executor } from '@moat/db'

export interface ReceivedJob<T> {
  /** the backend's id of the job: a row id (PostgreSQL) or a MessageId (SQS) */
  id: string
  body: T
  /** proof of this receive; `delete` and `changeVisibility` need it, and it changes on each receive */
  receipt: string
  /** how many times the job has been received, this time included */
  receiveCount: number
  sentAt: Date
}

export interface SendOptions {
  delaySeconds?: number
  /** send inside this transaction: the job exists only if the transaction commits */
  tx?: Executor
}

export interface ReceiveOptions {
  max?: number
  visibilityTimeout?: number
  /** long poll: wait up to this long for a job to become visible */
  waitSeconds?: number
  signal?: AbortSignal
}

export interface QueueDepth {
  /** ready to be received */
  visible: number
  /** sent with a delay that has not passed yet */
  delayed: number
  /** received and hidden by their visibility timeout */
  inFlight: number
  /** in the dead-letter queue */
  dead: number
}

/** SQS semantics: at-least-once delivery, visibility timeout, delays, dead-lettering. */
export interface Queue<T> {
  readonly name: string
  /** Resolves with the job's id (for a send inside `tx` on SQS: the outbox row's id). */
  send(body: T, options?: SendOptions): Promise<string>
  receive(options?: ReceiveOptions): Promise<ReceivedJob<T>[]>
  /**
   * Deletes a received job. `false` when the backend knows the receipt is stale (PostgreSQL); SQS
   * cannot tell and answers `true`, but a stale receipt never removes a job another receiver holds.
   * With `tx`, the job is deleted only if the transaction commits.
   */
  delete(receipt: string, options?: { tx?: Executor }): Promise<boolean>
  changeVisibility(receipt: string, seconds: number, options?: { tx?: Executor }): Promise<boolean>
  depth(): Promise<QueueDepth>
  /** seconds since the oldest visible job was sent, 0 when none (for metrics; approximate on SQS) */
  oldestAgeSeconds?(): Promise<number>
}

/**
 * A job body may be at most this many bytes of JSON: SQS's classic message limit. Jobs carry
 * references (a message id, a domain id), never message content: the raw message stays in the
 * object store. Both adapters enforce it, so a job that would not fit SQS fails on PostgreSQL too.
 */
export const MAX_JOB_BYTES = 256 * 1024

export class JobTooLargeError extends Error {
  override name = 'JobTooLargeError'
  constructor(
    readonly queue: string,
    readonly bytes: number,
  ) {
    super(
      `queue ${queue}: a job of ${bytes} bytes is over the ${MAX_JOB_BYTES}-byte limit; jobs carry references (ids, object keys), never message content`,
    )
  }
}

/** The job as JSON, refused when over `MAX_JOB_BYTES`. */
export function encodeJob(queue: string, body: unknown): string {
  const json = JSON.stringify(body)
  if (json === undefined) throw new TypeError(`queue ${queue}: a job body must be JSON`)
  const bytes = Buffer.byteLength(json)
  if (bytes > MAX_JOB_BYTES) throw new JobTooLargeError(queue, bytes)
  return json
}
