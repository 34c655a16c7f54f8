import os from 'node:os'
import path from 'node:path'
import { z } from 'zod'

const bool = z
  .enum(['1', '0', 'true', 'false', 'yes', 'no', 'on', 'off'], {
    error: 'expected one of 1, 0, true, false, yes, no, on, off',
  })
  .transform((v) => ['1', 'true', 'yes', 'on'].includes(v))

const port = z.coerce
  .number({ error: 'expected a TCP port number' })
  .int('expected a whole number')
  .min(0, 'expected a port between 0 and 65535')
  .max(65535, 'expected a port between 0 and 65535')

const positiveInt = z.coerce
  .number({ error: 'expected a number' })
  .int('expected a whole number')
  .positive('expected a number above 0')

const list = z.string().transform((v) =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean),
)

const clamd = z.string().refine((v) => v === 'auto' || /^tcp:\/\/[^:/]+:\d+$/.test(v) || v.startsWith('/'), {
  message: 'expected auto, tcp://host:port or an absolute path to the clamd socket',
})

const dnsblZone = z.object({
  zone: z.string().regex(/^[A-Za-z0-9.-]+$/, 'expected a DNS zone name'),
  type: z.enum(['ip', 'domain']),
  symbol: z.string().regex(/^[A-Z0-9_]+$/, 'expected an upper-case symbol name like RBL_EXAMPLE'),
  score: z.number(),
  codes: z
    .record(z.string(), z.object({ symbol: z.string().regex(/^[A-Z0-9_]+$/), score: z.number() }))
    .optional(),
})

const dnsblZones = z.string().transform((v, ctx) => {
  let json: unknown
  try {
    json = JSON.parse(v)
  } catch {
    ctx.addIssue({
      code: 'custom',
      message: 'expected a JSON array like [{"zone":"zen.example","type":"ip","symbol":"RBL_ZEN","score":4}]',
    })
    return z.NEVER
  }
  const parsed = z.array(dnsblZone).safeParse(json)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    ctx.addIssue({ code: 'custom', message: `zone ${issue?.path.join('.')}: ${issue?.message}` })
    return z.NEVER
  }
  return parsed.data
})

const egressPath = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9._-]+$/, 'expected a path name of letters, digits, dots, dashes'),
    weight: z.number().int().min(1).max(1000).default(1),
    /** a local source address to send from, with the HELO name that goes with it */
    bindIp: z.string().optional(),
    helo: z.string().optional(),
    /** an upstream smart host that takes all of this path's mail */
    smarthost: z
      .object({
        host: z.string().min(1),
        port: z.number().int().min(1).max(65535).default(25),
        /** `implicit` TLS from the start (port 465), else opportunistic STARTTLS */
        tls: z.enum(['starttls', 'implicit']).default('starttls'),
        user: z.string().optional(),
        pass: z.string().optional(),
      })
      .optional(),
  })
  .strict()

export type EgressPath = z.infer<typeof egressPath>

const senderPools = z.string().transform((v, ctx) => {
  let json: unknown
  try {
    json = JSON.parse(v)
  } catch {
    ctx.addIssue({
      code: 'custom',
      message:
        'expected a JSON object of pools, like {"default":[{"name":"mailx1","smarthost":{"host":"10.0.0.1"},"weight":2}]}',
    })
    return z.NEVER
  }
  const parsed = z.record(z.string().regex(/^[A-Za-z0-9._-]+$/), z.array(egressPath).min(1)).safeParse(json)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    ctx.addIssue({ code: 'custom', message: `pool ${issue?.path.join('.')}: ${issue?.message}` })
    return z.NEVER
  }
  return parsed.data
})

/** Every environment variable Moat reads, with its default. The README's configuration table mirrors this. */
const schema = z.object({
  DATABASE_URL: z
    .string()
    .regex(
      /^postgres(ql)?:\/\/\S+$/,
      'expected a postgres:// URL, e.g. postgres://user:password@host:5432/moat',
    )
    .optional(),
  MOAT_DATA_DIR: z.string().default('./data'),
  MOAT_LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  MOAT_HOSTNAME: z.string().min(1).default(os.hostname()),

  MOAT_SMTP_HOST: z.string().default('0.0.0.0'),
  MOAT_SMTP_PORT: port.default(2525),
  MOAT_SMTP_PROXY_PROTOCOL: bool.default(false),
  MOAT_TLS_CERT: z.string().optional(),
  MOAT_TLS_KEY: z.string().optional(),
  MOAT_MAX_MESSAGE_BYTES: positiveInt.default(25 * 1024 * 1024),
  MOAT_MAX_RECIPIENTS: positiveInt.default(100),
  MOAT_SMTP_MAX_CLIENTS: positiveInt.default(500),

  MOAT_CLAMD: clamd.default('auto'),
  MOAT_VIRUS_SCAN: z.enum(['on', 'off'], { error: 'expected on or off' }).default('on'),
  MOAT_CLAMD_TIMEOUT_SECONDS: positiveInt.default(60),
  MOAT_SCAN_CONCURRENCY: positiveInt.default(4),
  MOAT_SCAN_VISIBILITY_SECONDS: positiveInt.default(300),
  MOAT_SCAN_RETRY_SECONDS: positiveInt.default(30),

  MOAT_SPAM_SCAN: z.enum(['on', 'off'], { error: 'expected on or off' }).default('on'),
  MOAT_SPAM_MODEL: z.string().optional(),
  MOAT_AUTHSERV_ID: z
    .string()
    .regex(/^[A-Za-z0-9.-]+$/, 'expected a host name, e.g. mx.moat.example')
    .optional(),
  MOAT_DNSBL_ZONES: dnsblZones.default([]),

  MOAT_DELIVER_CONCURRENCY: positiveInt.default(8),
  MOAT_DELIVER_CONNECTIONS_PER_SERVER: positiveInt.default(4),
  MOAT_DELIVER_VISIBILITY_SECONDS: positiveInt.default(300),
  MOAT_DELIVER_TIMEOUT_SECONDS: positiveInt.default(60),
  MOAT_RETRY_FIRST_SECONDS: positiveInt.default(60),
  MOAT_RETRY_MAX_SECONDS: positiveInt.default(3600),
  MOAT_RETRY_GIVE_UP_SECONDS: positiveInt.default(5 * 24 * 3600),
  MOAT_SUSPENDED_RECHECK_SECONDS: positiveInt.default(60),

  MOAT_QUEUE_MAX_RECEIVES: positiveInt.default(10),
  MOAT_QUEUE_POLL_MS: positiveInt.default(250),
  MOAT_QUEUE: z.enum(['postgres', 'sqs'], { error: 'expected postgres or sqs' }).default('postgres'),
  // a plain pattern: emulators name queues with hosts like sqs.us-east-1.127.0.0.1, which z.url refuses
  MOAT_SQS_QUEUE_URL_PREFIX: z
    .string()
    .regex(
      /^https?:\/\/[^\s/]+\/\S*$/,
      'expected a URL, e.g. https://sqs.eu-west-1.amazonaws.com/123456789012/moat-',
    )
    .optional(),
  MOAT_SQS_REGION: z.string().min(1).default('us-east-1'),
  MOAT_SQS_ENDPOINT: z.url({ error: 'expected a URL, e.g. http://127.0.0.1:4566' }).optional(),
  MOAT_SQS_CREATE_QUEUES: bool.default(false),
  AWS_ACCESS_KEY_ID: z.string().optional(),
  AWS_SECRET_ACCESS_KEY: z.string().optional(),

  MOAT_METRICS_HOST: z.string().default('127.0.0.1'),
  MOAT_METRICS_PORT: port.default(9464),
  MOAT_SHUTDOWN_SECONDS: positiveInt.default(30),

  MOAT_API_HOST: z.string().default('127.0.0.1'),
  MOAT_API_PORT: port.default(8025),
  MOAT_API_RATE_PER_MINUTE: positiveInt.default(600),
  MOAT_ADMIN_TOKEN: z
    .string()
    .min(24, 'use at least 24 random characters, e.g. from: openssl rand -hex 24')
    .optional(),
  MOAT_DOMAIN_RECHECK_SECONDS: positiveInt.default(6 * 3600),
  MOAT_PORTAL_ORIGIN: z
    .string()
    .regex(
      /^https?:\/\/[^/\s]+$/,
      'expected an origin: scheme and host, no path, e.g. https://portal.example.com',
    )
    .optional(),

  MOAT_BLOBSTORE: z.enum(['local', 's3'], { error: 'expected local or s3' }).default('local'),
  MOAT_S3_BUCKET: z
    .string()
    .regex(
      /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/,
      'expected an S3 bucket name (3-63 lower-case letters, digits, dots, hyphens)',
    )
    .optional(),
  MOAT_S3_PREFIX: z
    .string()
    .regex(/^([^/].*\/)?$/, 'expected a key prefix ending in / and not starting with one, e.g. moat/')
    .default(''),
  MOAT_S3_REGION: z.string().default('us-east-1'),
  MOAT_S3_ENDPOINT: z.url({ error: 'expected a URL, e.g. https://minio.internal:9000' }).optional(),
  MOAT_S3_FORCE_PATH_STYLE: bool.default(false),
  MOAT_S3_SSE: z
    .enum(['none', 'AES256', 'aws:kms'], { error: 'expected none, AES256 or aws:kms' })
    .default('none'),
  MOAT_S3_SSE_KMS_KEY_ID: z.string().optional(),

  MOAT_ARCHIVE_PURGE_INTERVAL_SECONDS: positiveInt.default(3600),
  MOAT_ARCHIVE_PURGE_BATCH: positiveInt.default(500),
  MOAT_SUBMISSION_PORT: port.default(2587),
  MOAT_SUBMISSIONS_PORT: port.default(2465),
  MOAT_SUBMISSION_AUTH_SLOW_AFTER: positiveInt.default(3),
  MOAT_SUBMISSION_AUTH_BLOCK_AFTER: positiveInt.default(10),
  MOAT_SUBMISSION_AUTH_BLOCK_SECONDS: positiveInt.default(900),
  MOAT_OUTBOUND_RATE_PER_MINUTE: positiveInt.default(60),
  MOAT_OUTBOUND_RATE_PER_HOUR: positiveInt.default(1000),
  MOAT_OUTBOUND_TENANT_RATE_PER_MINUTE: positiveInt.default(600),
  MOAT_OUTBOUND_TENANT_RATE_PER_HOUR: positiveInt.default(10000),
  MOAT_OUTBOUND_SPIKE_FACTOR: positiveInt.default(10),
  MOAT_OUTBOUND_SPIKE_MIN: positiveInt.default(30),
  MOAT_OUTBOUND_SUSPEND_AFTER_HELD: positiveInt.default(5),
  MOAT_OUTBOUND_SPAM_THRESHOLD: z.coerce.number({ error: 'expected a number' }).default(6),
  MOAT_OUTBOUND_SMTP_PORT: port.default(25),
  MOAT_SENDER_POOLS: senderPools.optional(),
  MOAT_EGRESS_COOLDOWN_SECONDS: positiveInt.default(60),
  MOAT_STRIPE_SECRET_KEY: z
    .string()
    .regex(
      /^(sk|rk)_(test|live)_\S+$/,
      'expected a Stripe secret key, sk_live_… or sk_test_… (or a restricted rk_… key)',
    )
    .optional(),
  MOAT_STRIPE_WEBHOOK_SECRET: z
    .string()
    .regex(/^whsec_\S+$/, 'expected a webhook signing secret, whsec_…')
    .optional(),
  MOAT_STRIPE_API_URL: z
    .string()
    .regex(/^https?:\/\/[^/\s]+\/?$/, 'expected a base URL with no path, e.g. http://127.0.0.1:12111')
    .optional(),
  MOAT_STRIPE_METER_EVENT: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,100}$/, 'expected the event name of a Stripe billing meter, e.g. moat_messages')
    .default('moat_messages'),
  MOAT_STRIPE_PORTAL_RETURN_URL: z
    .url({ error: 'expected a URL, e.g. https://portal.example.com/billing' })
    .optional(),
  MOAT_BILLING_HOST: z.string().default('127.0.0.1'),
  MOAT_BILLING_PORT: port.default(8026),
  MOAT_BILLING_INTERVAL_SECONDS: positiveInt.default(60),
  MOAT_BILLING_GRACE_DAYS: z.coerce
    .number({ error: 'expected a number of days' })
    .int('expected a whole number')
    .min(0, 'expected 0 or more days')
    .default(7),

  MOAT_MX_HOSTS: list.default(['mx1.moat.localhost', 'mx2.moat.localhost']),
  MOAT_DNS_SERVERS: list.optional(),
})

/** The name of every environment variable Moat reads (the deployment test checks the Helm chart sets each). */
export const ENV_VARS: readonly string[] = Object.keys(schema.shape)

export type Config = {
  databaseUrl: string | undefined
  dataDir: string
  logLevel: z.infer<typeof schema>['MOAT_LOG_LEVEL']
  hostname: string
  smtp: {
    host: string
    port: number
    proxyProtocol: boolean
    tlsCert: string | undefined
    tlsKey: string | undefined
    maxMessageBytes: number
    maxRecipients: number
    maxClients: number
  }
  scan: {
    /** `auto`: clamd on 127.0.0.1:3310 if one answers, or else a local clamd that Moat starts itself */
    clamd: { host: string; port: number } | { socket: string } | 'auto'
    virusScan: boolean
    clamdTimeoutMs: number
    concurrency: number
    visibilitySeconds: number
    retrySeconds: number
    /** spam detection (authentication, blocklists, rules, content model) */
    spamScan: boolean
    /** the content model file; built from the bundled corpus on first start when missing */
    spamModelFile: string
    /** names this Moat in Authentication-Results headers */
    authservId: string
    dnsblZones: z.infer<typeof dnsblZone>[]
  }
  deliver: {
    concurrency: number
    /** pooled SMTP connections kept to one destination server */
    connectionsPerServer: number
    visibilitySeconds: number
    timeoutMs: number
    retryFirstSeconds: number
    retryMaxSeconds: number
    giveUpSeconds: number
    /** how often mail held for a suspended tenant looks again whether the tenant was resumed */
    suspendedRecheckSeconds: number
  }
  queue: {
    maxReceives: number
    pollMs: number
    kind: 'postgres' | 'sqs'
    /** with `kind: 'sqs'`: queue `scan` is at `${queueUrlPrefix}scan`, its dead-letter queue at `…scan-dead` */
    sqs: {
      queueUrlPrefix: string
      region: string
      endpoint: string | undefined
      /** create the queues and dead-letter queues at start (emulators, development) */
      createQueues: boolean
      /** static credentials; unset: the AWS SDK's default chain (web identity, instance role) */
      credentials: { accessKeyId: string; secretAccessKey: string } | undefined
    }
  }
  /** the health, readiness and metrics listener of each process */
  metrics: { host: string; port: number }
  /** how long a graceful stop may take before what is left is abandoned (and comes back) */
  shutdownMs: number
  /** the REST API's listener */
  api: {
    host: string
    port: number
    /** requests per minute per API key (counted in memory, per process) */
    ratePerMinute: number
    /** the portal's origin, the only one CORS lets in; unset: no CORS headers */
    portalOrigin: string | undefined
    /** the operator's bearer token for /v1/admin; unset: the operator routes answer 401 */
    adminToken: string | undefined
    /** how often each domain's DNS is checked again in the background (verification, MX drift) */
    domainRecheckSeconds: number
  }
  /** where raw messages and archive copies live */
  blobstore:
    | { kind: 'local' }
    | {
        kind: 's3'
        bucket: string
        prefix: string
        region: string
        endpoint: string | undefined
        forcePathStyle: boolean
        serverSideEncryption: 'AES256' | 'aws:kms' | undefined
        kmsKeyId: string | undefined
      }
  archive: {
    /** how often the retention purge runs (in the scan service) */
    purgeIntervalSeconds: number
    /** archived messages deleted per purge transaction */
    purgeBatch: number
  }
  /** outbound relay: submission, limits, delivery to the Internet */
  outbound: {
    /** STARTTLS, required before AUTH */
    submissionPort: number
    /** implicit TLS */
    submissionsPort: number
    /** AUTH failures from one IP after which each answer is slowed down… */
    authSlowAfter: number
    /** …and after which the IP is refused for `authBlockSeconds` */
    authBlockAfter: number
    authBlockSeconds: number
    /** messages per credential (or relay tenant without one) */
    perMinute: number
    perHour: number
    /** messages per tenant, all credentials together */
    tenantPerMinute: number
    tenantPerHour: number
    /** a credential's minute this many times above its usual rate (and at least `spikeMin`) suspends it */
    spikeFactor: number
    spikeMin: number
    /** held spam within an hour that suspends the credential */
    suspendAfterHeld: number
    spamThreshold: number
    /** the port Moat connects to at recipients' MX hosts */
    smtpPort: number
    /** named pools of egress paths; `default` for outbound, `inbound` for delivery to customers */
    pools: Record<string, EgressPath[]>
    /** how long a failing egress path rests before it is probed again */
    cooldownSeconds: number
  }
  /** metering, plans and Stripe (`services/billing`) */
  billing: {
    /** the Stripe webhook listener */
    host: string
    port: number
    /** how often usage is reported to Stripe and suspensions re-evaluated */
    intervalSeconds: number
    /** how long after a failed payment the tenant is suspended */
    graceDays: number
    /** unset: local metering only, no Stripe calls */
    stripe:
      | {
          secretKey: string
          webhookSecret: string | undefined
          /** another endpoint than api.stripe.com (a local stand-in) */
          apiUrl: string | undefined
          meterEvent: string
          portalReturnUrl: string | undefined
        }
      | undefined
  }
  mxHosts: string[]
  dnsServers: string[] | undefined
}

/** Thrown when the environment is wrong; the message names every bad variable and what it expects. */
export class ConfigError extends Error {
  override name = 'ConfigError'
}

/**
 * Reads and validates Moat's configuration from environment variables. Call it once at start-up and
 * pass the result down; nothing else reads `process.env`.
 *
 * @example
 * const config = loadConfig(process.env)
 * console.log(config.smtp.port) // 2525 unless MOAT_SMTP_PORT is set
 */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  // blank counts as unset: `MOAT_SMTP_PORT= ` would otherwise coerce to port 0, a random port
  const present = Object.fromEntries(
    Object.entries(env).filter(([, v]) => v !== undefined && v.trim() !== ''),
  )
  const parsed = schema.safeParse(present)
  const lines = parsed.success
    ? []
    : parsed.error.issues.map((issue) => {
        const name = String(issue.path[0] ?? '')
        // a secret's value never goes into an error message or a log
        const shown = /TOKEN|SECRET|PASSWORD|_KEY$/.test(name)
          ? `(hidden, ${(env[name] ?? '').length} characters)`
          : JSON.stringify(env[name] ?? '')
        return `  ${name}=${shown}: ${issue.message}`
      })
  // checked alongside the schema, so that the message lists every bad variable at once
  if (Boolean(present.MOAT_TLS_CERT) !== Boolean(present.MOAT_TLS_KEY)) {
    lines.push(
      '  MOAT_TLS_CERT and MOAT_TLS_KEY: set both (paths to a PEM certificate and its key) or neither',
    )
  }
  if (present.MOAT_QUEUE === 'sqs' && !present.MOAT_SQS_QUEUE_URL_PREFIX) {
    lines.push(
      '  MOAT_SQS_QUEUE_URL_PREFIX: required when MOAT_QUEUE=sqs (e.g. https://sqs.eu-west-1.amazonaws.com/123456789012/moat-)',
    )
  }
  if (Boolean(present.AWS_ACCESS_KEY_ID) !== Boolean(present.AWS_SECRET_ACCESS_KEY)) {
    lines.push(
      '  AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: set both or neither (neither: the SDK default chain)',
    )
  }
  if (present.MOAT_BLOBSTORE === 's3' && !present.MOAT_S3_BUCKET) {
    lines.push('  MOAT_S3_BUCKET: required when MOAT_BLOBSTORE=s3 (the bucket that holds the raw messages)')
  }
  if (!parsed.success || lines.length) throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`)
  const e = parsed.data
  const clamdUrl = e.MOAT_CLAMD.startsWith('tcp://') ? new URL(e.MOAT_CLAMD) : undefined
  return {
    databaseUrl: e.DATABASE_URL,
    dataDir: path.resolve(e.MOAT_DATA_DIR),
    logLevel: e.MOAT_LOG_LEVEL,
    hostname: e.MOAT_HOSTNAME,
    smtp: {
      host: e.MOAT_SMTP_HOST,
      port: e.MOAT_SMTP_PORT,
      proxyProtocol: e.MOAT_SMTP_PROXY_PROTOCOL,
      tlsCert: e.MOAT_TLS_CERT,
      tlsKey: e.MOAT_TLS_KEY,
      maxMessageBytes: e.MOAT_MAX_MESSAGE_BYTES,
      maxRecipients: e.MOAT_MAX_RECIPIENTS,
      maxClients: e.MOAT_SMTP_MAX_CLIENTS,
    },
    scan: {
      clamd:
        e.MOAT_CLAMD === 'auto'
          ? 'auto'
          : clamdUrl
            ? { host: clamdUrl.hostname, port: Number(clamdUrl.port) }
            : { socket: e.MOAT_CLAMD },
      virusScan: e.MOAT_VIRUS_SCAN === 'on',
      clamdTimeoutMs: e.MOAT_CLAMD_TIMEOUT_SECONDS * 1000,
      concurrency: e.MOAT_SCAN_CONCURRENCY,
      visibilitySeconds: e.MOAT_SCAN_VISIBILITY_SECONDS,
      retrySeconds: e.MOAT_SCAN_RETRY_SECONDS,
      spamScan: e.MOAT_SPAM_SCAN === 'on',
      spamModelFile: path.resolve(e.MOAT_SPAM_MODEL ?? path.join(e.MOAT_DATA_DIR, 'spam-model.bin')),
      authservId: e.MOAT_AUTHSERV_ID ?? e.MOAT_HOSTNAME,
      dnsblZones: e.MOAT_DNSBL_ZONES,
    },
    deliver: {
      concurrency: e.MOAT_DELIVER_CONCURRENCY,
      connectionsPerServer: e.MOAT_DELIVER_CONNECTIONS_PER_SERVER,
      visibilitySeconds: e.MOAT_DELIVER_VISIBILITY_SECONDS,
      timeoutMs: e.MOAT_DELIVER_TIMEOUT_SECONDS * 1000,
      retryFirstSeconds: e.MOAT_RETRY_FIRST_SECONDS,
      retryMaxSeconds: e.MOAT_RETRY_MAX_SECONDS,
      giveUpSeconds: e.MOAT_RETRY_GIVE_UP_SECONDS,
      suspendedRecheckSeconds: e.MOAT_SUSPENDED_RECHECK_SECONDS,
    },
    queue: {
      maxReceives: e.MOAT_QUEUE_MAX_RECEIVES,
      pollMs: e.MOAT_QUEUE_POLL_MS,
      kind: e.MOAT_QUEUE,
      sqs: {
        queueUrlPrefix: e.MOAT_SQS_QUEUE_URL_PREFIX ?? '',
        region: e.MOAT_SQS_REGION,
        endpoint: e.MOAT_SQS_ENDPOINT,
        createQueues: e.MOAT_SQS_CREATE_QUEUES,
        credentials:
          e.AWS_ACCESS_KEY_ID && e.AWS_SECRET_ACCESS_KEY
            ? { accessKeyId: e.AWS_ACCESS_KEY_ID, secretAccessKey: e.AWS_SECRET_ACCESS_KEY }
            : undefined,
      },
    },
    metrics: { host: e.MOAT_METRICS_HOST, port: e.MOAT_METRICS_PORT },
    shutdownMs: e.MOAT_SHUTDOWN_SECONDS * 1000,
    api: {
      host: e.MOAT_API_HOST,
      port: e.MOAT_API_PORT,
      ratePerMinute: e.MOAT_API_RATE_PER_MINUTE,
      portalOrigin: e.MOAT_PORTAL_ORIGIN,
      adminToken: e.MOAT_ADMIN_TOKEN,
      domainRecheckSeconds: e.MOAT_DOMAIN_RECHECK_SECONDS,
    },
    blobstore:
      e.MOAT_BLOBSTORE === 's3'
        ? {
            kind: 's3',
            bucket: e.MOAT_S3_BUCKET ?? '',
            prefix: e.MOAT_S3_PREFIX,
            region: e.MOAT_S3_REGION,
            endpoint: e.MOAT_S3_ENDPOINT,
            forcePathStyle: e.MOAT_S3_FORCE_PATH_STYLE,
            serverSideEncryption: e.MOAT_S3_SSE === 'none' ? undefined : e.MOAT_S3_SSE,
            kmsKeyId: e.MOAT_S3_SSE_KMS_KEY_ID,
          }
        : { kind: 'local' },
    archive: {
      purgeIntervalSeconds: e.MOAT_ARCHIVE_PURGE_INTERVAL_SECONDS,
      purgeBatch: e.MOAT_ARCHIVE_PURGE_BATCH,
    },
    outbound: {
      submissionPort: e.MOAT_SUBMISSION_PORT,
      submissionsPort: e.MOAT_SUBMISSIONS_PORT,
      authSlowAfter: e.MOAT_SUBMISSION_AUTH_SLOW_AFTER,
      authBlockAfter: e.MOAT_SUBMISSION_AUTH_BLOCK_AFTER,
      authBlockSeconds: e.MOAT_SUBMISSION_AUTH_BLOCK_SECONDS,
      perMinute: e.MOAT_OUTBOUND_RATE_PER_MINUTE,
      perHour: e.MOAT_OUTBOUND_RATE_PER_HOUR,
      tenantPerMinute: e.MOAT_OUTBOUND_TENANT_RATE_PER_MINUTE,
      tenantPerHour: e.MOAT_OUTBOUND_TENANT_RATE_PER_HOUR,
      spikeFactor: e.MOAT_OUTBOUND_SPIKE_FACTOR,
      spikeMin: e.MOAT_OUTBOUND_SPIKE_MIN,
      suspendAfterHeld: e.MOAT_OUTBOUND_SUSPEND_AFTER_HELD,
      spamThreshold: e.MOAT_OUTBOUND_SPAM_THRESHOLD,
      smtpPort: e.MOAT_OUTBOUND_SMTP_PORT,
      pools: e.MOAT_SENDER_POOLS ?? {},
      cooldownSeconds: e.MOAT_EGRESS_COOLDOWN_SECONDS,
    },
    billing: {
      host: e.MOAT_BILLING_HOST,
      port: e.MOAT_BILLING_PORT,
      intervalSeconds: e.MOAT_BILLING_INTERVAL_SECONDS,
      graceDays: e.MOAT_BILLING_GRACE_DAYS,
      stripe: e.MOAT_STRIPE_SECRET_KEY
        ? {
            secretKey: e.MOAT_STRIPE_SECRET_KEY,
            webhookSecret: e.MOAT_STRIPE_WEBHOOK_SECRET,
            apiUrl: e.MOAT_STRIPE_API_URL,
            meterEvent: e.MOAT_STRIPE_METER_EVENT,
            portalReturnUrl: e.MOAT_STRIPE_PORTAL_RETURN_URL ?? e.MOAT_PORTAL_ORIGIN,
          }
        : undefined,
    },
    mxHosts: e.MOAT_MX_HOSTS,
    dnsServers: e.MOAT_DNS_SERVERS,
  }
}
