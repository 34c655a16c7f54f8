import { type Logger, pino } from 'pino'

export type { Logger }

/**
 * The one logger factory. JSON lines to stdout; services take child loggers carrying their
 * correlation ids (`sessionId`, `messageId`, `jobId`). Message bodies and addresses beyond the
 * envelope never go into logs.
 *
 * @example
 * const log = createLogger({ level: 'info', name: 'ingest' })
 * log.child({ sessionId }).info('connection accepted')
 */
export function createLogger(options: { level: string; name?: string }): Logger {
  return pino({
    level: options.level,
    name: options.name,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  })
}
