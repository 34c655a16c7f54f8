import fs from 'node:fs/promises'
import type { ObjectStore } from '@moat/blobstore'
import { type ServiceName, type Stack, startStack } from '@moat/cli'
import { type Config, loadConfig } from '@moat/config'
import {
  addDomain,
  createResolver,
  createTenant,
  type MessageTrace,
  parseDestination,
  setRoutes,
  showMessage,
  VERIFICATION_PREFIX,
  verifyDomain,
} from '@moat/core'
import { createLogger } from '@moat/log'
import type { VirusScanner } from '@moat/scan'
import nodemailer, { type SendMailOptions } from 'nodemailer'
import { createTestDatabase, type TestDatabase } from './database'
import { startDnsServer, type TestDnsServer, tempDir } from './peers'
import { eventually } from './wait'

export interface Harness {
  config: Config
  /** the environment the stack was configured from, for child processes */
  env: Record<string, string>
  stack: Stack
  database: TestDatabase
  dns: TestDnsServer
  dataDir: string
  /** the ingest SMTP port */
  smtpPort: number
  /** the submission ports: STARTTLS, and implicit TLS */
  submissionPort: number
  submissionsPort: number
  /** the REST API's base URL, when it runs */
  apiUrl: string | undefined
  /** Sends a message to Moat over SMTP (STARTTLS when offered) and resolves with the queue id of its `250`. */
  send(message: SendMailOptions): Promise<string>
  /** Waits until the (first) record of `queueId` satisfies `done`, and resolves with its trace. */
  traceWhen(
    queueId: string,
    done: (trace: MessageTrace) => boolean,
    timeoutMs?: number,
  ): Promise<MessageTrace>
  /** Creates a tenant with a domain verified through the test DNS server and routed to `destinations`. */
  customer(input: {
    tenant: string
    domain: string
    destinations: string[]
  }): Promise<{ tenantId: string; domainId: string }>
  close(): Promise<void>
}

/**
 * The whole stack in this process on a fresh database, a temporary data directory and a DNS
 * server on loopback, with retry delays short enough for tests.
 */
export async function startHarness(
  options: {
    env?: Record<string, string>
    only?: ServiceName[]
    scanner?: VirusScanner
    /** instead of the local directory under the data directory (e.g. S3 on the fauxqs emulator) */
    store?: ObjectStore
  } = {},
): Promise<Harness> {
  const database = await createTestDatabase()
  const dns = await startDnsServer()
  const dataDir = await tempDir()
  const env: Record<string, string> = {
    DATABASE_URL: database.url,
    MOAT_DATA_DIR: dataDir,
    MOAT_HOSTNAME: 'mx.moat.test',
    MOAT_SMTP_HOST: '127.0.0.1',
    MOAT_SMTP_PORT: '0',
    MOAT_SUBMISSION_PORT: '0',
    MOAT_SUBMISSIONS_PORT: '0',
    MOAT_API_HOST: '127.0.0.1',
    MOAT_API_PORT: '0',
    MOAT_DNS_SERVERS: dns.address,
    MOAT_MX_HOSTS: 'mx1.moat.test,mx2.moat.test',
    MOAT_LOG_LEVEL: process.env.MOAT_TEST_LOG_LEVEL ?? 'warn',
    MOAT_CLAMD: 'tcp://127.0.0.1:9',
    MOAT_QUEUE_POLL_MS: '50',
    MOAT_METRICS_HOST: '127.0.0.1',
    MOAT_METRICS_PORT: '0',
    MOAT_SHUTDOWN_SECONDS: '5',
    MOAT_RETRY_FIRST_SECONDS: '1',
    MOAT_RETRY_MAX_SECONDS: '2',
    MOAT_SCAN_RETRY_SECONDS: '1',
    MOAT_DELIVER_TIMEOUT_SECONDS: '5',
    ...(process.env.MOAT_TEST_SPAM_MODEL ? { MOAT_SPAM_MODEL: process.env.MOAT_TEST_SPAM_MODEL } : {}),
    ...options.env,
  }
  const config = loadConfig(env)
  const log = createLogger({ level: config.logLevel, name: 'test' })
  const stack = await startStack(config, {
    only: options.only,
    log,
    scanner: options.scanner,
    ...(options.store ? { store: options.store } : {}),
  })
  const resolver = createResolver(config.dnsServers)
  return {
    config,
    env,
    stack,
    database,
    dns,
    dataDir,
    smtpPort: stack.ingest?.port ?? 0,
    submissionPort: stack.submission?.port ?? 0,
    submissionsPort: stack.submission?.securePort ?? 0,
    apiUrl: stack.api?.url,
    async send(message) {
      const info = await nodemailer
        .createTransport({
          host: '127.0.0.1',
          port: stack.ingest?.port,
          secure: false,
          tls: { rejectUnauthorized: false },
        })
        .sendMail(message)
      const queueId = /^250 2\.0\.0 queued as (\S+)$/.exec(info.response)?.[1]
      if (!queueId) throw new Error(`unexpected reply to DATA: ${info.response}`)
      return queueId
    },
    traceWhen(queueId, done, timeoutMs) {
      return eventually(
        `message ${queueId} to reach the expected state`,
        async () => {
          const [trace] = await showMessage(stack.database.db, queueId).catch(() => [])
          return trace && done(trace) ? trace : undefined
        },
        timeoutMs,
      )
    },
    async customer(input) {
      const db = stack.database.db
      const tenant = await createTenant(db, { name: input.tenant, actor: 'test' })
      const domain = await addDomain(db, { tenant: tenant.id, name: input.domain, actor: 'test' })
      dns.zones.set(domain.name, {
        txt: [`${VERIFICATION_PREFIX}${domain.verificationToken}`],
        mx: config.mxHosts.map((exchange, i) => ({ exchange, priority: 10 * (i + 1) })),
      })
      const result = await verifyDomain(db, resolver, {
        name: domain.name,
        mxHosts: config.mxHosts,
        actor: 'test',
      })
      if (!result.verified) throw new Error(`test domain not verified: ${result.reason}`)
      if (input.destinations.length) {
        await setRoutes(db, {
          domain: domain.name,
          destinations: input.destinations.map(parseDestination),
          actor: 'test',
        })
      }
      return { tenantId: tenant.id, domainId: domain.id }
    },
    async close() {
      await stack.close()
      await dns.stop()
      await database.close()
      await fs.rm(dataDir, { recursive: true, force: true })
    },
  }
}
