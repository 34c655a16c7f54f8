import type { Readable } from 'node:stream'
import NodeClam from 'clamscan'

export type VirusScanResult = { infected: false } | { infected: true; signatures: string[] }

/** Scans a raw message for viruses. Throws when the scanner cannot give an answer (retry later). */
export interface VirusScanner {
  scan(message: Readable): Promise<VirusScanResult>
}

export class ScannerUnavailableError extends Error {
  override name = 'ScannerUnavailableError'
}

/**
 * ClamAV's clamd through the `clamscan` package (INSTREAM over TCP or a Unix socket). No local
 * binary fallback: without clamd there is no scan, and the caller retries later.
 */
export class ClamdScanner implements VirusScanner {
  private clam: Promise<NodeClam> | undefined

  constructor(
    private readonly target: { host: string; port: number } | { socket: string },
    private readonly timeoutMs: number,
  ) {}

  private client(): Promise<NodeClam> {
    this.clam ??= new NodeClam()
      .init({
        removeInfected: false,
        quarantineInfected: false,
        debugMode: false,
        preference: 'clamdscan',
        clamscan: { active: false },
        clamdscan: {
          ...('socket' in this.target
            ? { socket: this.target.socket }
            : { host: this.target.host, port: this.target.port, socket: false }),
          timeout: this.timeoutMs,
          localFallback: false,
          active: true,
          bypassTest: true,
        },
      })
      .catch((err: unknown) => {
        this.clam = undefined
        throw err
      })
    return this.clam
  }

  async scan(message: Readable): Promise<VirusScanResult> {
    let result: { isInfected: boolean | null; viruses: string[] }
    try {
      const clam = await this.client()
      result = await clam.scanStream(message)
    } catch (err) {
      message.destroy()
      throw new ScannerUnavailableError(`clamd did not scan the message: ${describe(err)}`, { cause: err })
    }
    if (result.isInfected === null) {
      throw new ScannerUnavailableError('clamd gave no verdict for the message')
    }
    return result.isInfected ? { infected: true, signatures: result.viruses } : { infected: false }
  }
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code ?? (err.cause as NodeJS.ErrnoException | undefined)?.code
    return code ? `${err.message} (${code})` : err.message
  }
  return String(err)
}
