import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { indexMessage } from '@moat/archive'
import { LocalObjectStore } from '@moat/blobstore'
import type { Config } from '@moat/config'
import type { DeliverJob } from '@moat/core'
import {
  type Database,
  domains,
  messageEvents,
  messages,
  newId,
  openDatabase,
  recipients,
  runMigrations,
} from '@moat/db'
import { loadOrBuildModel } from '@moat/detect'
import { PostgresQueue } from '@moat/queue'
import { eq } from 'drizzle-orm'
// the files directly: the testkit index pulls in the whole stack
import { createTestDatabase, type TestDatabase } from '../../../packages/testkit/src/database'
import { startDnsServer, type TestDnsServer } from '../../../packages/testkit/src/peers'
import { type ApiServer, lazy, startApi } from '../src/index'
import type { RateLimits } from '../src/rate-limit'

export const MX_HOSTS = ['mx1.moat.test', 'mx2.moat.test']

export interface TestApi {
  url: string
  dns: TestDnsServer
  database: Database
  /** fetch against the API, with an optional API key or session cookie */
  call(
    method: string,
    path: string,
    options?: { key?: string; cookie?: string; body?: unknown; headers?: Record<string, string> },
    // biome-ignore lint/suspicious/noExplicitAny: a JSON answer, which the assertions check
  ): Promise<{ status: number; headers: Headers; body: any }>
  /** signs up a tenant and gives its owner's session cookie and an admin API key */
  tenant(name: string): Promise<{ tenantId: string; cookie: string; key: string; keyId: string }>
  /**
   * Stores a raw message for the tenant as the scan worker leaves it (quarantined by default),
   * with a verified domain for its recipient, a `scanned` event and the raw object.
   */
  message(
    tenantId: string,
    options?: {
      from?: string
      to?: string
      subject?: string
      body?: string
      /** extra header lines, and the body's own Content-Type instead of text/plain */
      headers?: string[]
      status?: string
      score?: number
      virus?: string
    },
  ): Promise<string>
  deliverQueue: PostgresQueue<DeliverJob>
  /** the raw messages */
  store: LocalObjectStore
  /** archives a message as the archive worker does; gives the archived message's id */
  archive(messageId: string): Promise<string>
  close(): Promise<void>
}

/**
 * The API on a real HTTP server (port 0) over a fresh database (PGlite, or PostgreSQL at
 * DATABASE_URL), with a DNS server on loopback for domain verification.
 */
export async function startTestApi(
  options: {
    limits?: RateLimits
    portalOrigin?: string
    adminToken?: string
    domainRecheckSeconds?: number
    billing?: Config['billing']
  } = {},
): Promise<TestApi> {
  const testDb: TestDatabase = await createTestDatabase()
  await runMigrations(testDb.url)
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'moat-api-'))
  const database = await openDatabase({ databaseUrl: testDb.url, dataDir, maxConnections: 4 })
  const dns = await startDnsServer()
  const store = new LocalObjectStore(path.join(dataDir, 'objects'))
  const deliverQueue = new PostgresQueue<DeliverJob>(database.db, 'deliver')
  const modelFile = process.env.MOAT_TEST_SPAM_MODEL ?? path.join(dataDir, 'spam-model.bin')
  const server: ApiServer = await startApi({
    config: {
      api: {
        host: '127.0.0.1',
        port: 0,
        ratePerMinute: options.limits?.apiPerMinute ?? 600,
        portalOrigin: options.portalOrigin,
        adminToken: options.adminToken,
        domainRecheckSeconds: options.domainRecheckSeconds ?? 3600,
      },
      hostname: 'mx.moat.test',
      mxHosts: MX_HOSTS,
      dnsServers: [dns.address],
      ...(options.billing ? { billing: options.billing } : {}),
    },
    limits: options.limits,
    db: database.db,
    mail: { store, deliverQueue, model: lazy(async () => loadOrBuildModel(modelFile)) },
  })

  const call: TestApi['call'] = async (method, p, options = {}) => {
    const headers: Record<string, string> = { ...options.headers }
    if (options.key) headers.authorization = `Bearer ${options.key}`
    if (options.cookie) headers.cookie = options.cookie
    if (options.body !== undefined) headers['content-type'] = 'application/json'
    const res = await fetch(`${server.url}${p}`, {
      method,
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
    })
    const text = await res.text()
    const type = res.headers.get('content-type') ?? ''
    return { status: res.status, headers: res.headers, body: type.includes('json') ? JSON.parse(text) : text }
  }

  const db = database.db
  return {
    url: server.url,
    dns,
    database,
    call,
    deliverQueue,
    store,
    async archive(messageId) {
      await indexMessage({ db, store }, messageId)
      const [row] = await database.sql`select id from archived_messages where message_id = ${messageId}`
      if (!row) throw new Error(`message ${messageId} was not archived`)
      return row.id as string
    },
    async message(tenantId, o = {}) {
      const from = o.from ?? 'sender@spam.example'
      const to = o.to ?? `user@${tenantId}.test`
      const status = o.status ?? 'quarantined'
      const domainName = to.split('@')[1] ?? ''
      const [existing] = await db.select().from(domains).where(eq(domains.name, domainName))
      const domainId = existing?.id ?? newId('dom')
      if (!existing) {
        await db.insert(domains).values({
          id: domainId,
          tenantId,
          name: domainName,
          status: 'verified',
          verificationToken: 'test',
          verifiedAt: new Date(),
        })
      }
      const id = newId('msg')
      const raw = Buffer.from(
        [
          `From: <${from}>`,
          `To: <${to}>`,
          `Subject: ${o.subject ?? 'cheap pills'}`,
          ...(o.headers ?? ['Content-Type: text/plain; charset=utf-8']),
          '',
          o.body ?? 'buy now',
          '',
        ].join('\r\n'),
      )
      const objectKey = `inbound/${id}.eml`
      await store.put(objectKey, raw)
      await db.insert(messages).values({
        id,
        tenantId,
        queueId: id.slice(4, 16),
        status,
        mailFrom: from,
        rcptTo: [to],
        objectKey,
        size: raw.length,
        subject: o.subject ?? 'cheap pills',
        virusScan: o.virus ? 'infected' : 'clean',
        virusName: o.virus ?? null,
        spamScore: o.virus ? null : (o.score ?? 12),
        action: status === 'quarantined' ? 'quarantine' : 'deliver',
      })
      await db.insert(recipients).values({ messageId: id, tenantId, address: to, domainId, status })
      await db.insert(messageEvents).values({
        messageId: id,
        tenantId,
        kind: 'scanned',
        detail: {
          action: status === 'quarantined' ? 'quarantine' : 'deliver',
          score: o.score ?? 12,
          symbols: [{ name: o.virus ? 'VIRUS' : 'BAYES_SPAM', score: o.score ?? 12 }],
        },
      })
      return id
    },
    async tenant(name) {
      const email = `owner@${name}.test`
      const password = `${name}-password-1`
      const signup = await call('POST', '/v1/signup', { body: { tenant: name, email, password } })
      if (signup.status !== 201) throw new Error(`signup failed: ${JSON.stringify(signup.body)}`)
      const login = await call('POST', '/v1/login', { body: { email, password } })
      const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0] ?? ''
      const created = await call('POST', '/v1/api-keys', { cookie, body: { name: 'test' } })
      return { tenantId: signup.body.tenant.id, cookie, key: created.body.key, keyId: created.body.apiKey.id }
    },
    async close() {
      await server.close()
      await dns.stop()
      await database.close()
      await testDb.close()
      await fs.rm(dataDir, { recursive: true, force: true })
    },
  }
}
