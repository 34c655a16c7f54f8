/** The body of a job on the `scan` queue: one message record to scan. */
export interface ScanJob {
  messageId: string
}

/**
 * The body of a job on the `deliver` queue: a message's recipients in one domain. Inbound mail
 * names the customer's domain (`domainId`, delivered to its routes); outbound mail names the
 * recipients' domain on the Internet (`domain`, delivered to its MX through a sender pool).
 */
export type DeliverJob = { messageId: string; domainId: string } | { messageId: string; domain: string }

/** The recipient domain of an address, lower case. */
export function addressDomain(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1).toLowerCase()
}

/** The body of a job on the `archive` queue: a message to copy into the archive and index. */
export interface ArchiveJob {
  messageId: string
}
