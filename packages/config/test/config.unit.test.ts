import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { ConfigError, loadConfig } from '../src/index'

/** The ConfigError `loadConfig(env)` throws; fails the test when it does not throw one. */
function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env)
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError)
    return err as ConfigError
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`)
}

describe('loadConfig defaults', () => {
  afterEach(() => {
    vi.unstubAllEnvs()
  })

  it('an empty environment gives the documented defaults', () => {
    const config = loadConfig({})
    expect(config.smtp).toEqual({
      host: '0.0.0.0',
      port: 2525,
      proxyProtocol: false,
      tlsCert: undefined,
      tlsKey: undefined,
      maxMessageBytes: 25 * 1024 * 1024,
      maxRecipients: 100,
      maxClients: 500,
    })
    expect(config.deliver).toMatchObject({
      retryFirstSeconds: 60,
      retryMaxSeconds: 3600,
      giveUpSeconds: 5 * 24 * 3600,
      suspendedRecheckSeconds: 60,
      concurrency: 8,
      visibilitySeconds: 300,
      timeoutMs: 60_000,
    })
    expect(config.scan).toEqual({
      clamd: 'auto',
      virusScan: true,
      clamdTimeoutMs: 60_000,
      concurrency: 4,
      visibilitySeconds: 300,
      retrySeconds: 30,
      spamScan: true,
      spamModelFile: path.resolve('./data/spam-model.bin'),
      authservId: os.hostname(),
      dnsblZones: [],
    })
    expect(config.queue).toEqual({
      maxReceives: 10,
      pollMs: 250,
      kind: 'postgres',
      sqs: {
        queueUrlPrefix: '',
        region: 'us-east-1',
        endpoint: undefined,
        createQueues: false,
        credentials: undefined,
      },
    })
    expect(config.metrics).toEqual({ host: '127.0.0.1', port: 9464 })
    expect(config.shutdownMs).toBe(30_000)
    expect(config.api).toEqual({
      host: '127.0.0.1',
      port: 8025,
      ratePerMinute: 600,
      portalOrigin: undefined,
      adminToken: undefined,
      domainRecheckSeconds: 21600,
    })
    expect(config.databaseUrl).toBeUndefined()
    expect(config.dataDir).toBe(path.resolve('./data'))
    expect(config.logLevel).toBe('info')
    expect(config.hostname).toBe(os.hostname())
    expect(config.mxHosts).toEqual(['mx1.moat.localhost', 'mx2.moat.localhost'])
    expect(config.dnsServers).toBeUndefined()
    // no Stripe key: local metering only
    expect(config.billing).toEqual({
      host: '127.0.0.1',
      port: 8026,
      intervalSeconds: 60,
      graceDays: 7,
      stripe: undefined,
    })
  })

  it('reads only the environment it is given, not process.env', () => {
    vi.stubEnv('MOAT_SMTP_PORT', '9999')
    vi.stubEnv('MOAT_VIRUS_SCAN', 'maybe')
    expect(loadConfig({}).smtp.port).toBe(2525)
  })

  it('treats empty and blank values as unset', () => {
    const config = loadConfig({
      MOAT_SMTP_PORT: '',
      MOAT_MAX_RECIPIENTS: '   ',
      MOAT_HOSTNAME: '',
      MOAT_TLS_CERT: ' ',
    })
    expect(config.smtp.port).toBe(2525)
    expect(config.smtp.maxRecipients).toBe(100)
    expect(config.hostname).toBe(os.hostname())
    expect(config.smtp.tlsCert).toBeUndefined()
    // not port 0 (a random port), which is what a blank string coerces to
    expect(loadConfig({ MOAT_SMTP_PORT: ' ' }).smtp.port).toBe(2525)
  })
})

describe('loadConfig overrides', () => {
  it('takes every setting from the environment', () => {
    const config = loadConfig({
      DATABASE_URL: 'postgres://moat:secret@db.internal:5432/moat',
      MOAT_DATA_DIR: 'relative/dir',
      MOAT_LOG_LEVEL: 'debug',
      MOAT_HOSTNAME: 'mx.example.net',
      MOAT_SMTP_HOST: '127.0.0.1',
      MOAT_SMTP_PORT: '25',
      MOAT_SMTP_PROXY_PROTOCOL: 'yes',
      MOAT_TLS_CERT: '/etc/moat/cert.pem',
      MOAT_TLS_KEY: '/etc/moat/key.pem',
      MOAT_MAX_MESSAGE_BYTES: '10485760',
      MOAT_MAX_RECIPIENTS: '50',
      MOAT_SMTP_MAX_CLIENTS: '20',
      MOAT_CLAMD: 'tcp://clamd.internal:3311',
      MOAT_VIRUS_SCAN: 'off',
      MOAT_CLAMD_TIMEOUT_SECONDS: '5',
      MOAT_SCAN_CONCURRENCY: '2',
      MOAT_SCAN_VISIBILITY_SECONDS: '120',
      MOAT_SCAN_RETRY_SECONDS: '15',
      MOAT_SPAM_SCAN: 'off',
      MOAT_SPAM_MODEL: '/var/lib/moat/model.bin',
      MOAT_AUTHSERV_ID: 'filter.example.net',
      MOAT_DNSBL_ZONES:
        '[{"zone":"bl.example","type":"ip","symbol":"RBL_EXAMPLE","score":4,"codes":{"127.0.0.4":{"symbol":"RBL_EXAMPLE_XBL","score":6}}}]',
      MOAT_DELIVER_CONCURRENCY: '16',
      MOAT_DELIVER_CONNECTIONS_PER_SERVER: '12',
      MOAT_DELIVER_VISIBILITY_SECONDS: '600',
      MOAT_DELIVER_TIMEOUT_SECONDS: '30',
      MOAT_RETRY_FIRST_SECONDS: '30',
      MOAT_RETRY_MAX_SECONDS: '7200',
      MOAT_RETRY_GIVE_UP_SECONDS: '86400',
      MOAT_SUSPENDED_RECHECK_SECONDS: '15',
      MOAT_ADMIN_TOKEN: 'an-operator-token-of-32-characters',
      MOAT_DOMAIN_RECHECK_SECONDS: '600',
      MOAT_QUEUE_MAX_RECEIVES: '3',
      MOAT_QUEUE_POLL_MS: '50',
      MOAT_QUEUE: 'sqs',
      MOAT_SQS_QUEUE_URL_PREFIX: 'https://sqs.eu-west-1.amazonaws.com/123456789012/moat-',
      MOAT_SQS_REGION: 'eu-west-1',
      MOAT_SQS_ENDPOINT: 'http://127.0.0.1:4566',
      MOAT_SQS_CREATE_QUEUES: '1',
      AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
      AWS_SECRET_ACCESS_KEY: 'secret',
      MOAT_METRICS_HOST: '0.0.0.0',
      MOAT_METRICS_PORT: '9100',
      MOAT_SHUTDOWN_SECONDS: '10',
      MOAT_API_HOST: '0.0.0.0',
      MOAT_API_PORT: '8080',
      MOAT_API_RATE_PER_MINUTE: '120',
      MOAT_PORTAL_ORIGIN: 'https://portal.example.net',
      MOAT_MX_HOSTS: ' mx-a.example.net, mx-b.example.net,,',
      MOAT_DNS_SERVERS: '10.0.0.53,10.0.0.54',
      MOAT_STRIPE_SECRET_KEY: 'sk_test_abc123',
      MOAT_STRIPE_WEBHOOK_SECRET: 'whsec_xyz',
      MOAT_STRIPE_API_URL: 'http://127.0.0.1:12111',
      MOAT_STRIPE_METER_EVENT: 'mail_scanned',
      MOAT_BILLING_HOST: '0.0.0.0',
      MOAT_BILLING_PORT: '9026',
      MOAT_BILLING_INTERVAL_SECONDS: '30',
      MOAT_BILLING_GRACE_DAYS: '0',
      MOAT_SUBMISSION_PORT: '587',
      MOAT_SUBMISSIONS_PORT: '465',
      MOAT_SUBMISSION_AUTH_SLOW_AFTER: '2',
      MOAT_SUBMISSION_AUTH_BLOCK_AFTER: '6',
      MOAT_SUBMISSION_AUTH_BLOCK_SECONDS: '300',
      MOAT_OUTBOUND_RATE_PER_MINUTE: '20',
      MOAT_OUTBOUND_RATE_PER_HOUR: '200',
      MOAT_OUTBOUND_TENANT_RATE_PER_MINUTE: '100',
      MOAT_OUTBOUND_TENANT_RATE_PER_HOUR: '2000',
      MOAT_OUTBOUND_SPIKE_FACTOR: '5',
      MOAT_OUTBOUND_SPIKE_MIN: '40',
      MOAT_OUTBOUND_SUSPEND_AFTER_HELD: '3',
      MOAT_OUTBOUND_SPAM_THRESHOLD: '4.5',
      MOAT_OUTBOUND_SMTP_PORT: '2500',
      MOAT_SENDER_POOLS:
        '{"default":[{"name":"mailx1","weight":2,"smarthost":{"host":"10.0.0.1"}}],"inbound":[{"name":"in1","bindIp":"192.0.2.10","helo":"in1.example.net"}]}',
      MOAT_EGRESS_COOLDOWN_SECONDS: '30',
    })
    expect(config).toEqual({
      databaseUrl: 'postgres://moat:secret@db.internal:5432/moat',
      dataDir: path.resolve('relative/dir'),
      logLevel: 'debug',
      hostname: 'mx.example.net',
      smtp: {
        host: '127.0.0.1',
        port: 25,
        proxyProtocol: true,
        tlsCert: '/etc/moat/cert.pem',
        tlsKey: '/etc/moat/key.pem',
        maxMessageBytes: 10_485_760,
        maxRecipients: 50,
        maxClients: 20,
      },
      scan: {
        clamd: { host: 'clamd.internal', port: 3311 },
        virusScan: false,
        clamdTimeoutMs: 5_000,
        concurrency: 2,
        visibilitySeconds: 120,
        retrySeconds: 15,
        spamScan: false,
        spamModelFile: '/var/lib/moat/model.bin',
        authservId: 'filter.example.net',
        dnsblZones: [
          {
            zone: 'bl.example',
            type: 'ip',
            symbol: 'RBL_EXAMPLE',
            score: 4,
            codes: { '127.0.0.4': { symbol: 'RBL_EXAMPLE_XBL', score: 6 } },
          },
        ],
      },
      deliver: {
        concurrency: 16,
        connectionsPerServer: 12,
        visibilitySeconds: 600,
        timeoutMs: 30_000,
        retryFirstSeconds: 30,
        retryMaxSeconds: 7200,
        giveUpSeconds: 86_400,
        suspendedRecheckSeconds: 15,
      },
      queue: {
        maxReceives: 3,
        pollMs: 50,
        kind: 'sqs',
        sqs: {
          queueUrlPrefix: 'https://sqs.eu-west-1.amazonaws.com/123456789012/moat-',
          region: 'eu-west-1',
          endpoint: 'http://127.0.0.1:4566',
          createQueues: true,
          credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' },
        },
      },
      metrics: { host: '0.0.0.0', port: 9100 },
      shutdownMs: 10_000,
      api: {
        host: '0.0.0.0',
        port: 8080,
        ratePerMinute: 120,
        portalOrigin: 'https://portal.example.net',
        adminToken: 'an-operator-token-of-32-characters',
        domainRecheckSeconds: 600,
      },
      blobstore: { kind: 'local' },
      archive: { purgeIntervalSeconds: 3600, purgeBatch: 500 },
      billing: {
        host: '0.0.0.0',
        port: 9026,
        intervalSeconds: 30,
        graceDays: 0,
        stripe: {
          secretKey: 'sk_test_abc123',
          webhookSecret: 'whsec_xyz',
          apiUrl: 'http://127.0.0.1:12111',
          meterEvent: 'mail_scanned',
          // the portal's origin when no return URL of its own is set
          portalReturnUrl: 'https://portal.example.net',
        },
      },
      outbound: {
        submissionPort: 587,
        submissionsPort: 465,
        authSlowAfter: 2,
        authBlockAfter: 6,
        authBlockSeconds: 300,
        perMinute: 20,
        perHour: 200,
        tenantPerMinute: 100,
        tenantPerHour: 2000,
        spikeFactor: 5,
        spikeMin: 40,
        suspendAfterHeld: 3,
        spamThreshold: 4.5,
        smtpPort: 2500,
        pools: {
          default: [
            { name: 'mailx1', weight: 2, smarthost: { host: '10.0.0.1', port: 25, tls: 'starttls' } },
          ],
          inbound: [{ name: 'in1', weight: 1, bindIp: '192.0.2.10', helo: 'in1.example.net' }],
        },
        cooldownSeconds: 30,
      },
      mxHosts: ['mx-a.example.net', 'mx-b.example.net'],
      dnsServers: ['10.0.0.53', '10.0.0.54'],
    })
  })

  it('MOAT_SENDER_POOLS that is not JSON, or has a bad path, names the problem', () => {
    expect(() => loadConfig({ MOAT_SENDER_POOLS: 'mailx1,mailx2' })).toThrow(
      /MOAT_SENDER_POOLS="mailx1,mailx2": expected a JSON object of pools/,
    )
    expect(() => loadConfig({ MOAT_SENDER_POOLS: '{"default":[{"name":"x","weight":0}]}' })).toThrow(
      /MOAT_SENDER_POOLS=.*: pool default\.0\.weight: /,
    )
  })

  it('accepts every spelling of a boolean', () => {
    for (const yes of ['1', 'true', 'yes', 'on']) {
      expect(loadConfig({ MOAT_SMTP_PROXY_PROTOCOL: yes }).smtp.proxyProtocol, yes).toBe(true)
    }
    for (const no of ['0', 'false', 'no', 'off']) {
      expect(loadConfig({ MOAT_SMTP_PROXY_PROTOCOL: no }).smtp.proxyProtocol, no).toBe(false)
    }
  })

  it('takes clamd as a unix socket path', () => {
    expect(loadConfig({ MOAT_CLAMD: '/run/clamav/clamd.ctl' }).scan.clamd).toEqual({
      socket: '/run/clamav/clamd.ctl',
    })
  })

  it('accepts the edges of the port range', () => {
    expect(loadConfig({ MOAT_SMTP_PORT: '0' }).smtp.port).toBe(0)
    expect(loadConfig({ MOAT_SMTP_PORT: '65535' }).smtp.port).toBe(65535)
  })
})

describe('loadConfig errors name the variable, its value and what it expects', () => {
  it('MOAT_SMTP_PORT=abc', () => {
    const err = configError({ MOAT_SMTP_PORT: 'abc' })
    expect(err.name).toBe('ConfigError')
    expect(err.message).toBe('invalid configuration:\n  MOAT_SMTP_PORT="abc": expected a TCP port number')
  })

  it('MOAT_SMTP_PORT=70000 and -1', () => {
    expect(configError({ MOAT_SMTP_PORT: '70000' }).message).toBe(
      'invalid configuration:\n  MOAT_SMTP_PORT="70000": expected a port between 0 and 65535',
    )
    expect(configError({ MOAT_SMTP_PORT: '-1' }).message).toBe(
      'invalid configuration:\n  MOAT_SMTP_PORT="-1": expected a port between 0 and 65535',
    )
  })

  it('MOAT_API_PORT=http', () => {
    expect(configError({ MOAT_API_PORT: 'http' }).message).toBe(
      'invalid configuration:\n  MOAT_API_PORT="http": expected a TCP port number',
    )
  })

  it('MOAT_ADMIN_TOKEN that is too short to be safe, without showing it', () => {
    expect(configError({ MOAT_ADMIN_TOKEN: 'secret' }).message).toBe(
      'invalid configuration:\n  MOAT_ADMIN_TOKEN=(hidden, 6 characters): use at least 24 random characters, e.g. from: openssl rand -hex 24',
    )
  })

  it('MOAT_API_RATE_PER_MINUTE=0 and MOAT_PORTAL_ORIGIN with a path', () => {
    expect(
      configError({ MOAT_API_RATE_PER_MINUTE: '0', MOAT_PORTAL_ORIGIN: 'https://portal.example.net/app' })
        .message,
    ).toBe(
      'invalid configuration:\n' +
        '  MOAT_API_RATE_PER_MINUTE="0": expected a number above 0\n' +
        '  MOAT_PORTAL_ORIGIN="https://portal.example.net/app": expected an origin: scheme and host, no path, e.g. https://portal.example.com',
    )
  })

  it('a malformed Stripe key or webhook secret is named but never echoed', () => {
    expect(
      configError({ MOAT_STRIPE_SECRET_KEY: 'pk_live_public', MOAT_STRIPE_WEBHOOK_SECRET: 'secret' }).message,
    ).toBe(
      'invalid configuration:\n' +
        '  MOAT_STRIPE_SECRET_KEY=(hidden, 14 characters): expected a Stripe secret key, sk_live_… or sk_test_… (or a restricted rk_… key)\n' +
        '  MOAT_STRIPE_WEBHOOK_SECRET=(hidden, 6 characters): expected a webhook signing secret, whsec_…',
    )
  })

  it('MOAT_STRIPE_API_URL with a path, MOAT_BILLING_GRACE_DAYS=-1', () => {
    expect(
      configError({ MOAT_STRIPE_API_URL: 'https://stripe.internal/v1', MOAT_BILLING_GRACE_DAYS: '-1' })
        .message,
    ).toBe(
      'invalid configuration:\n' +
        '  MOAT_STRIPE_API_URL="https://stripe.internal/v1": expected a base URL with no path, e.g. http://127.0.0.1:12111\n' +
        '  MOAT_BILLING_GRACE_DAYS="-1": expected 0 or more days',
    )
  })

  it('MOAT_SMTP_PORT=25.5', () => {
    expect(configError({ MOAT_SMTP_PORT: '25.5' }).message).toBe(
      'invalid configuration:\n  MOAT_SMTP_PORT="25.5": expected a whole number',
    )
  })

  it('MOAT_VIRUS_SCAN=maybe', () => {
    expect(configError({ MOAT_VIRUS_SCAN: 'maybe' }).message).toBe(
      'invalid configuration:\n  MOAT_VIRUS_SCAN="maybe": expected on or off',
    )
  })

  it('MOAT_DNSBL_ZONES that is not JSON, or not a list of zones', () => {
    expect(configError({ MOAT_DNSBL_ZONES: 'zen.spamhaus.org' }).message).toBe(
      'invalid configuration:\n  MOAT_DNSBL_ZONES="zen.spamhaus.org": expected a JSON array like [{"zone":"zen.example","type":"ip","symbol":"RBL_ZEN","score":4}]',
    )
    expect(
      configError({ MOAT_DNSBL_ZONES: '[{"zone":"bl.example","type":"url","symbol":"X","score":1}]' })
        .message,
    ).toMatch(/^invalid configuration:\n {2}MOAT_DNSBL_ZONES=.*: zone 0\.type: /)
    expect(
      configError({ MOAT_DNSBL_ZONES: '[{"zone":"bl.example","type":"ip","symbol":"lower","score":1}]' })
        .message,
    ).toContain('zone 0.symbol: expected an upper-case symbol name like RBL_EXAMPLE')
  })

  it('MOAT_CLAMD=localhost:3310', () => {
    expect(configError({ MOAT_CLAMD: 'localhost:3310' }).message).toBe(
      'invalid configuration:\n  MOAT_CLAMD="localhost:3310": expected auto, tcp://host:port or an absolute path to the clamd socket',
    )
  })

  it('MOAT_MAX_RECIPIENTS=0 and MOAT_SMTP_PROXY_PROTOCOL=sure', () => {
    expect(configError({ MOAT_MAX_RECIPIENTS: '0' }).message).toBe(
      'invalid configuration:\n  MOAT_MAX_RECIPIENTS="0": expected a number above 0',
    )
    expect(configError({ MOAT_SMTP_PROXY_PROTOCOL: 'sure' }).message).toBe(
      'invalid configuration:\n  MOAT_SMTP_PROXY_PROTOCOL="sure": expected one of 1, 0, true, false, yes, no, on, off',
    )
  })

  it('MOAT_TLS_CERT without MOAT_TLS_KEY, and the other way round', () => {
    const expected =
      'invalid configuration:\n  MOAT_TLS_CERT and MOAT_TLS_KEY: set both (paths to a PEM certificate and its key) or neither'
    expect(configError({ MOAT_TLS_CERT: '/etc/moat/cert.pem' }).message).toBe(expected)
    expect(configError({ MOAT_TLS_KEY: '/etc/moat/key.pem' }).message).toBe(expected)
  })

  it('lists several bad variables together, the TLS pair included', () => {
    const err = configError({
      MOAT_SMTP_PORT: 'abc',
      MOAT_VIRUS_SCAN: 'maybe',
      MOAT_CLAMD: 'localhost:3310',
      MOAT_MAX_MESSAGE_BYTES: '1.5',
      MOAT_TLS_CERT: '/etc/moat/cert.pem',
    })
    expect(err.message).toBe(
      [
        'invalid configuration:',
        '  MOAT_SMTP_PORT="abc": expected a TCP port number',
        '  MOAT_MAX_MESSAGE_BYTES="1.5": expected a whole number',
        '  MOAT_CLAMD="localhost:3310": expected auto, tcp://host:port or an absolute path to the clamd socket',
        '  MOAT_VIRUS_SCAN="maybe": expected on or off',
        '  MOAT_TLS_CERT and MOAT_TLS_KEY: set both (paths to a PEM certificate and its key) or neither',
      ].join('\n'),
    )
  })

  it('ignores variables it does not know', () => {
    expect(loadConfig({ MOAT_SMTP_PORTT: 'abc', PATH: '/usr/bin', HOME: '/root' }).smtp.port).toBe(2525)
  })
})

describe('loadConfig: the SQS queue', () => {
  it('MOAT_QUEUE=sqs needs MOAT_SQS_QUEUE_URL_PREFIX', () => {
    expect(configError({ MOAT_QUEUE: 'sqs' }).message).toBe(
      'invalid configuration:\n  MOAT_SQS_QUEUE_URL_PREFIX: required when MOAT_QUEUE=sqs (e.g. https://sqs.eu-west-1.amazonaws.com/123456789012/moat-)',
    )
  })

  it('MOAT_QUEUE=kafka and a prefix that is not a URL', () => {
    expect(configError({ MOAT_QUEUE: 'kafka', MOAT_SQS_QUEUE_URL_PREFIX: 'moat-' }).message).toBe(
      'invalid configuration:\n  MOAT_QUEUE="kafka": expected postgres or sqs\n  MOAT_SQS_QUEUE_URL_PREFIX="moat-": expected a URL, e.g. https://sqs.eu-west-1.amazonaws.com/123456789012/moat-',
    )
  })

  it('static AWS credentials come in pairs', () => {
    expect(configError({ AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE' }).message).toBe(
      'invalid configuration:\n  AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: set both or neither (neither: the SDK default chain)',
    )
  })
})

describe('object store and archive settings', () => {
  it('defaults to the local directory store and an hourly purge of 500 at a time', () => {
    const config = loadConfig({})
    expect(config.blobstore).toEqual({ kind: 'local' })
    expect(config.archive).toEqual({ purgeIntervalSeconds: 3600, purgeBatch: 500 })
  })

  it('reads the S3 settings', () => {
    const config = loadConfig({
      MOAT_BLOBSTORE: 's3',
      MOAT_S3_BUCKET: 'moat-mail',
      MOAT_S3_PREFIX: 'prod/',
      MOAT_S3_REGION: 'eu-west-1',
      MOAT_S3_ENDPOINT: 'http://127.0.0.1:9000',
      MOAT_S3_FORCE_PATH_STYLE: 'yes',
      MOAT_S3_SSE: 'aws:kms',
      MOAT_S3_SSE_KMS_KEY_ID: 'alias/moat',
    })
    expect(config.blobstore).toEqual({
      kind: 's3',
      bucket: 'moat-mail',
      prefix: 'prod/',
      region: 'eu-west-1',
      endpoint: 'http://127.0.0.1:9000',
      forcePathStyle: true,
      serverSideEncryption: 'aws:kms',
      kmsKeyId: 'alias/moat',
    })
  })

  it('names each bad S3 setting, and asks for a bucket when the store is s3', () => {
    expect(configError({ MOAT_BLOBSTORE: 's3' }).message).toBe(
      'invalid configuration:\n  MOAT_S3_BUCKET: required when MOAT_BLOBSTORE=s3 (the bucket that holds the raw messages)',
    )
    const err = configError({
      MOAT_BLOBSTORE: 'gcs',
      MOAT_S3_BUCKET: 'Bad_Bucket',
      MOAT_S3_PREFIX: '/root/',
      MOAT_S3_SSE: 'yes',
      MOAT_S3_ENDPOINT: 'minio',
    }).message
    expect(err).toContain('MOAT_BLOBSTORE="gcs": expected local or s3')
    expect(err).toContain('MOAT_S3_BUCKET="Bad_Bucket": expected an S3 bucket name')
    expect(err).toContain('MOAT_S3_PREFIX="/root/": expected a key prefix ending in /')
    expect(err).toContain('MOAT_S3_SSE="yes": expected none, AES256 or aws:kms')
    expect(err).toContain('MOAT_S3_ENDPOINT="minio": expected a URL')
  })
})
