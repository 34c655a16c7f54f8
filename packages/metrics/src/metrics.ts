import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'

/**
 * Moat's Prometheus metrics, one registry per process (whatever services it runs). Services count
 * into these; gauges that need a query (queue depth and age, retry backlog, outbox) are filled by
 * the collectors `startOpsServer` is given, when Prometheus scrapes `/metrics`.
 *
 * @example
 * metrics.smtpReplies.inc({ code: '250' })
 * const end = metrics.scanDuration.startTimer(); ...; end({ action: 'deliver' })
 */
export const registry = new Registry()
collectDefaultMetrics({ register: registry, prefix: 'moat_' })

export const metrics = {
  smtpSessions: new Counter({
    name: 'moat_smtp_sessions_total',
    help: 'SMTP connections accepted by ingest',
    registers: [registry],
  }),
  smtpSessionsOpen: new Gauge({
    name: 'moat_smtp_sessions_open',
    help: 'SMTP connections open now',
    registers: [registry],
  }),
  smtpReplies: new Counter({
    name: 'moat_smtp_replies_total',
    help: 'replies ingest gave to RCPT TO and DATA (and 421 at shutdown), by reply code',
    labelNames: ['code'] as const,
    registers: [registry],
  }),
  queueDepth: new Gauge({
    name: 'moat_queue_depth',
    help: 'jobs in a queue by state: visible, delayed, in_flight, dead',
    labelNames: ['queue', 'state'] as const,
    registers: [registry],
  }),
  queueOldestAge: new Gauge({
    name: 'moat_queue_oldest_age_seconds',
    help: 'age of the oldest visible job (PostgreSQL queue; on SQS use CloudWatch ApproximateAgeOfOldestMessage)',
    labelNames: ['queue'] as const,
    registers: [registry],
  }),
  outboxBacklog: new Gauge({
    name: 'moat_queue_outbox_rows',
    help: 'jobs committed but not yet carried to SQS by the outbox relay',
    registers: [registry],
  }),
  outboxOldestAge: new Gauge({
    name: 'moat_queue_outbox_oldest_age_seconds',
    help: 'age of the oldest outbox row',
    registers: [registry],
  }),
  scanVerdicts: new Counter({
    name: 'moat_scan_verdicts_total',
    help: 'messages scanned, by action (deliver, tag, quarantine, discard) and virus result',
    labelNames: ['action', 'virus'] as const,
    registers: [registry],
  }),
  scanDeferred: new Counter({
    name: 'moat_scan_deferred_total',
    help: 'scans put off because the virus scanner was unavailable',
    registers: [registry],
  }),
  scanDuration: new Histogram({
    name: 'moat_scan_duration_seconds',
    help: 'time to judge one message (virus scan and spam detection)',
    labelNames: ['action'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  }),
  deliveryAttempts: new Counter({
    name: 'moat_delivery_attempts_total',
    help: 'delivery attempts to a destination server, by result (delivered, deferred, failed)',
    labelNames: ['result'] as const,
    registers: [registry],
  }),
  retryBacklog: new Gauge({
    name: 'moat_retry_backlog',
    help: 'recipients waiting for another delivery try (status deferred)',
    registers: [registry],
  }),
  ready: new Gauge({
    name: 'moat_ready',
    help: '1 when every readiness check of this process passes',
    registers: [registry],
  }),
}
