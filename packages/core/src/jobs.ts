/** The body of a job on the `scan` queue: one message record to scan. */
export interface ScanJob {
  messageId: string
}

/** The body of a job on the `deliver` queue: a message's recipients in one of its domains. */
export interface DeliverJob {
  messageId: string
  domainId: string
}

/** The body of a job on the `archive` queue: a message to copy into the archive and index. */
export interface ArchiveJob {
  messageId: string
}
