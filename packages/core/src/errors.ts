/** What went wrong, in words a customer or operator can act on. Only the edges (CLI, API, SMTP) map it. */
export type MoatErrorCode = 'not_found' | 'conflict' | 'invalid' | 'forbidden' | 'verification_failed'

export class MoatError extends Error {
  override name = 'MoatError'
  constructor(
    readonly code: MoatErrorCode,
    message: string,
    /** what to do about it */
    readonly hint?: string,
  ) {
    super(message)
  }
}
