import { type Config, ConfigError, loadConfig } from '@moat/config'
import {
  addDomain,
  addListEntry,
  createResolver,
  createTenant,
  type DeliverJob,
  findDomain,
  findTenant,
  forceDkimKey,
  getPolicy,
  listDomains,
  listListEntries,
  listMessages,
  listRoutes,
  listTenants,
  MoatError,
  type PolicySettings,
  parseDestination,
  removeListEntry,
  requiredRecords,
  resumeTenant,
  setPolicy,
  setRoutes,
  setSenderPool,
  showMessage,
  suspendTenant,
  verifyDomain,
  withAuditSource,
} from '@moat/core'
import { type Database, openDatabase, runMigrations } from '@moat/db'
import { createLogger } from '@moat/log'
import { PostgresQueue } from '@moat/queue'
import { Command, CommanderError, Option } from 'commander'
import * as out from './output'
import { SERVICES, type ServiceName } from './services'

const ACTOR = `operator:${process.env.USER ?? 'cli'}`

function config(): Config {
  return loadConfig(process.env)
}

/** Runs `fn` against the migrated database, then closes it. */
async function withDb<T>(fn: (database: Database, cfg: Config) => Promise<T>): Promise<T> {
  const cfg = config()
  const database = await openDatabase({ databaseUrl: cfg.databaseUrl, dataDir: cfg.dataDir, role: 'cli' })
  try {
    await runMigrations(database.url)
    return await fn(database, cfg)
  } finally {
    await database.close()
  }
}

const program = new Command()
  .name('moat')
  .description('Moat operator command line: run the services and manage tenants, domains, routes and mail.')
  .option('--json', 'print JSON for scripts instead of text for people')
  .showHelpAfterError()
  .exitOverride()

const json = (): boolean => Boolean(program.opts().json)

program
  .command('start')
  .description('run the services (all in one process by default)')
  .addOption(
    new Option('--only <services>', `comma-separated subset of ${SERVICES.join(',')}`).argParser((v) => {
      const names = v.split(',').map((s) => s.trim())
      const bad = names.filter((n) => !SERVICES.includes(n as ServiceName))
      if (bad.length)
        throw new MoatError(
          'invalid',
          `unknown service ${bad.join(', ')}`,
          `choose from ${SERVICES.join(', ')}`,
        )
      return names as ServiceName[]
    }),
  )
  .action(async (opts: { only?: ServiceName[] }) => {
    const cfg = config()
    const log = createLogger({ level: cfg.logLevel, name: 'moat' })
    // loaded here: the other commands stay quick without the services' dependencies
    const { startStack } = await import('./stack')
    const stack = await startStack(cfg, { only: opts.only, log })
    out.startBanner(cfg, stack)
    let stopping = false
    const stop = (signal: string) => {
      if (stopping) {
        process.exit(1)
      }
      stopping = true
      log.info({ signal }, 'shutting down: finishing open SMTP sessions and running jobs')
      stack.close().then(
        () => process.exit(0),
        (err: unknown) => {
          log.error({ err }, 'shutdown failed')
          process.exit(1)
        },
      )
    }
    process.on('SIGINT', () => stop('SIGINT'))
    process.on('SIGTERM', () => stop('SIGTERM'))
    await new Promise(() => {})
  })

program
  .command('migrate')
  .description('apply database migrations')
  .action(async () => {
    await withDb(async (database) => {
      out.print(
        json(),
        { migrated: true, database: database.url.replace(/:[^:@/]*@/, ':***@') },
        () => 'migrations applied',
      )
    })
  })

const tenant = program.command('tenant').description('manage tenants (customers)')
tenant
  .command('create <name>')
  .description('create a tenant')
  .action(async (name: string) => {
    await withDb(async ({ db }) => {
      const t = await createTenant(db, { name, actor: ACTOR })
      out.print(
        json(),
        t,
        () => `created tenant ${t.name} (${t.id})\nnext: moat domain add ${t.name} example.com`,
      )
    })
  })
tenant
  .command('suspend <name>')
  .description('suspend a tenant: its mail is accepted and kept but not delivered until it is resumed')
  .option('--note <text>', 'why, for the audit log and the customer')
  .action(async (name: string, opts: { note?: string }) => {
    await withDb(async ({ db }) => {
      const t = await suspendTenant(db, {
        tenantId: (await findTenant(db, name)).id,
        reason: 'operator',
        note: opts.note,
        actor: ACTOR,
      })
      out.print(json(), t, () => `suspended ${t.name}: its mail waits until: moat tenant resume ${t.name}`)
    })
  })
tenant
  .command('resume <name>')
  .description('resume a suspended tenant (any reason): the mail that waited is delivered')
  .action(async (name: string) => {
    await withDb(async ({ db }) => {
      const t = await resumeTenant(db, {
        tenantId: (await findTenant(db, name)).id,
        reason: 'operator',
        actor: ACTOR,
      })
      out.print(json(), t, () => `resumed ${t.name}`)
    })
  })
tenant
  .command('pool <name> <pool>')
  .description(
    "send the tenant's outbound mail through a sender pool of MOAT_SENDER_POOLS (`default` to reset)",
  )
  .action(async (name: string, pool: string) => {
    await withDb(async ({ db }, cfg) => {
      if (pool !== 'default' && !cfg.outbound.pools[pool]) {
        throw new MoatError(
          'invalid',
          `no sender pool ${pool}`,
          `configured pools: ${Object.keys(cfg.outbound.pools).join(', ') || 'none (set MOAT_SENDER_POOLS)'}`,
        )
      }
      const t = await findTenant(db, name)
      await setSenderPool(db, { tenantId: t.id, pool: pool === 'default' ? null : pool, actor: ACTOR })
      out.print(json(), { tenant: t.name, pool }, () => `${t.name} now sends through the ${pool} pool`)
    })
  })
tenant
  .command('list')
  .description('list tenants')
  .action(async () => {
    await withDb(async ({ db }) => {
      const rows = await listTenants(db)
      out.print(json(), rows, () =>
        out.table(
          rows.map((t) => ({
            name: t.name,
            id: t.id,
            status: t.status === 'suspended' ? `suspended (${t.suspendedReason})` : t.status,
          })),
        ),
      )
    })
  })

const domain = program.command('domain').description('manage customer domains')
domain
  .command('add <tenant> <domain>')
  .description('add a domain and print the DNS records to publish')
  .action(async (tenantName: string, name: string) => {
    await withDb(async ({ db }, cfg) => {
      const d = await addDomain(db, { tenant: tenantName, name, actor: ACTOR })
      const records = requiredRecords(d, cfg.mxHosts)
      out.print(json(), { ...d, records }, () => out.domainAdded(d, records))
    })
  })
domain
  .command('verify <domain>')
  .description('check the TXT verification record and whether MX points at Moat')
  .option('--force', 'verify without DNS (operator override; recorded in the audit log)')
  .option('--tenant <tenant>', 'which tenant, when several added the domain')
  .action(async (name: string, opts: { force?: boolean; tenant?: string }) => {
    await withDb(async ({ db }, cfg) => {
      const result = await verifyDomain(db, createResolver(cfg.dnsServers), {
        name,
        mxHosts: cfg.mxHosts,
        actor: ACTOR,
        force: opts.force,
        tenant: opts.tenant,
      })
      out.print(json(), result, () => out.verification(result, cfg.mxHosts))
      if (!result.verified) process.exitCode = 1
    })
  })
domain
  .command('list')
  .description('list domains')
  .option('--tenant <tenant>', 'only this tenant')
  .action(async (opts: { tenant?: string }) => {
    await withDb(async ({ db }) => {
      const rows = await listDomains(db, opts.tenant)
      out.print(json(), rows, () =>
        out.table(
          rows.map((d) => ({
            domain: d.name,
            tenant: d.tenantName,
            status: d.status,
            mx: d.mxPointsAtMoat === null ? '?' : d.mxPointsAtMoat ? 'moat' : 'elsewhere',
            checked: d.lastCheckAt?.toISOString() ?? '-',
          })),
        ),
      )
    })
  })

program
  .command('dkim-force <domain>')
  .description("sign the domain's outbound mail with its newest DKIM key although its DNS record is not seen")
  .option('--off', 'stop forcing: sign only once the record is published')
  .action(async (name: string, opts: { off?: boolean }) => {
    await withDb(async ({ db }) => {
      const key = await forceDkimKey(db, { domain: name, forced: !opts.off, actor: ACTOR })
      out.print(json(), key, () =>
        opts.off
          ? `${name}: signing with ${key.selector} only once its record is published`
          : `${name}: signing with ${key.selector} now (forced; the override is in the audit log)`,
      )
    })
  })

const route = program.command('route').description("manage where a domain's clean mail is delivered")
route
  .command('set <domain> <destinations...>')
  .description('set the destination servers, as HOST:PORT[:PRIORITY] (lower priority first)')
  .action(async (name: string, specs: string[]) => {
    await withDb(async ({ db }) => {
      const rows = await setRoutes(db, {
        domain: name,
        destinations: specs.map(parseDestination),
        actor: ACTOR,
      })
      out.print(
        json(),
        rows,
        () =>
          `routes for ${name}:\n${out.table(rows.map((r) => ({ priority: r.priority, host: r.host, port: r.port })))}`,
      )
    })
  })
route
  .command('list <domain>')
  .description("show a domain's destination servers")
  .action(async (name: string) => {
    await withDb(async ({ db }) => {
      const d = await findDomain(db, name)
      const rows = await listRoutes(db, d.id)
      out.print(json(), rows, () =>
        rows.length
          ? out.table(rows.map((r) => ({ priority: r.priority, host: r.host, port: r.port })))
          : `no routes for ${d.name}; set one with: moat route set ${d.name} mail.${d.name}:25`,
      )
    })
  })

program
  .command('messages')
  .description('list recent messages, newest first')
  .option('--domain <domain>', 'only mail for this domain')
  .option('--status <status>', 'received, queued, delivered, deferred, failed, quarantined')
  .option('--limit <n>', 'how many', (v) => Number.parseInt(v, 10), 50)
  .action(async (opts: { domain?: string; status?: string; limit: number }) => {
    await withDb(async ({ db }) => {
      const rows = await listMessages(db, opts)
      out.print(json(), rows, () => out.messageList(rows))
    })
  })

const message = program.command('message').description('inspect one message')
message
  .command('show <id>')
  .description('the whole lifecycle of a message (by message id or SMTP queue id)')
  .action(async (id: string) => {
    await withDb(async ({ db }) => {
      const traces = await showMessage(db, id)
      out.print(json(), traces.length === 1 ? traces[0] : traces, () => traces.map(out.trace).join('\n\n'))
    })
  })

message
  .command('release <id>')
  .description("deliver a quarantined message, and teach the tenant's spam model that it is ham")
  .option('--force', 'release even a message that carries a virus')
  .action(async (id: string, opts: { force?: boolean }) => {
    await withDb(async ({ db }, cfg) => {
      const { releaseMessage } = await import('@moat/scan')
      const r = await releaseMessage(await feedbackDeps(db, cfg), {
        messageId: id,
        actor: ACTOR,
        force: opts.force,
      })
      out.print(json(), r, () =>
        [
          `released ${r.message.id}: queued for delivery to ${r.message.rcptTo.join(', ')}`,
          r.learnt && r.scoreBefore !== null && r.scoreAfter !== null
            ? `the tenant's model learnt it is ham (spam probability ${r.scoreBefore.toFixed(3)} → ${r.scoreAfter.toFixed(3)})`
            : "the tenant's model was not taught (virus, or already taught)",
        ].join('\n'),
      )
    })
  })
message
  .command('report-spam <id>')
  .description("teach the tenant's spam model that this message is spam")
  .action(async (id: string) => {
    await withDb(async ({ db }, cfg) => {
      const { reportSpam } = await import('@moat/scan')
      const r = await reportSpam(await feedbackDeps(db, cfg), { messageId: id, actor: ACTOR })
      out.print(json(), r, () =>
        r.learnt && r.scoreBefore !== null && r.scoreAfter !== null
          ? `reported ${r.message.id} as spam: spam probability for this tenant ${r.scoreBefore.toFixed(3)} → ${r.scoreAfter.toFixed(3)}`
          : `${r.message.id} was already reported as spam; nothing changed`,
      )
    })
  })

/** What release and report-spam need: the object store, the spam model and the delivery queue. */
async function feedbackDeps(db: Database['db'], cfg: Config) {
  const [{ loadOrBuildModel }, { objectStore }] = await Promise.all([
    import('@moat/detect'),
    import('./stack'),
  ])
  return {
    db,
    store: objectStore(cfg),
    model: loadOrBuildModel(cfg.scan.spamModelFile),
    deliverQueue: new PostgresQueue<DeliverJob>(db, 'deliver'),
  }
}

/** `off` turns a threshold or the subject prefix off; anything else must be a number. */
function threshold(value: string): number | null {
  if (value === 'off') return null
  const n = Number(value)
  if (value.trim() === '' || !Number.isFinite(n))
    throw new MoatError('invalid', `expected a number or off, not ${JSON.stringify(value)}`)
  return n
}

const policy = program
  .command('policy')
  .description("a tenant's spam thresholds and actions (per domain if need be)")
policy
  .command('show <tenant>')
  .description('the policy in force, and where each value comes from')
  .option('--domain <domain>', "one domain's policy")
  .action(async (tenantName: string, opts: { domain?: string }) => {
    await withDb(async ({ db }) => {
      const t = await findTenant(db, tenantName)
      const p = await getPolicy(db, { tenantId: t.id, domain: opts.domain })
      out.print(json(), p, () => out.policy(p))
    })
  })
policy
  .command('set <tenant>')
  .description(
    'change thresholds (a score at or above one takes that action) or the subject prefix of tagged mail',
  )
  .option('--domain <domain>', 'set it for one domain only (overrides the tenant)')
  .option('--tag <score>', 'deliver with X-Moat-Spam: yes from this score (or off)')
  .option('--quarantine <score>', 'quarantine from this score (or off)')
  .option('--discard <score>', 'discard from this score (or off, the default)')
  .option('--subject-prefix <text>', 'prefix the subject of tagged mail, e.g. [SPAM] (or off)')
  .action(
    async (
      tenantName: string,
      opts: { domain?: string; tag?: string; quarantine?: string; discard?: string; subjectPrefix?: string },
    ) => {
      await withDb(async ({ db }) => {
        const t = await findTenant(db, tenantName)
        const settings: PolicySettings = {}
        if (opts.tag !== undefined) settings.tagThreshold = threshold(opts.tag)
        if (opts.quarantine !== undefined) settings.quarantineThreshold = threshold(opts.quarantine)
        if (opts.discard !== undefined) settings.discardThreshold = threshold(opts.discard)
        if (opts.subjectPrefix !== undefined)
          settings.subjectPrefix = opts.subjectPrefix === 'off' ? null : opts.subjectPrefix
        if (!Object.keys(settings).length)
          throw new MoatError(
            'invalid',
            'nothing to change',
            'give at least one of --tag, --quarantine, --discard, --subject-prefix',
          )
        const p = await setPolicy(db, { tenantId: t.id, domain: opts.domain, settings, actor: ACTOR })
        out.print(json(), p, () => out.policy(p))
      })
    },
  )

const lists = program
  .command('list')
  .description('allow and block lists: sender address, sender domain, or client IP/CIDR')
lists
  .command('add <tenant> <action> <kind> <value>')
  .description('add an entry: ACTION is allow or block, KIND is address, domain or ip')
  .option('--domain <domain>', 'only for mail to this domain of the tenant')
  .option('--note <text>', 'why (shown in the list and the audit log)')
  .action(
    async (
      tenantName: string,
      action: string,
      kind: string,
      value: string,
      opts: { domain?: string; note?: string },
    ) => {
      await withDb(async ({ db }) => {
        const t = await findTenant(db, tenantName)
        const row = await addListEntry(db, {
          tenantId: t.id,
          domain: opts.domain,
          action,
          kind,
          value,
          note: opts.note,
          actor: ACTOR,
        })
        out.print(
          json(),
          row,
          () =>
            `added ${row.id}: ${row.action} ${row.kind} ${row.value}${opts.domain ? ` for ${opts.domain}` : ''}`,
        )
      })
    },
  )
lists
  .command('show <tenant>')
  .description("a tenant's allow and block entries")
  .action(async (tenantName: string) => {
    await withDb(async ({ db }) => {
      const t = await findTenant(db, tenantName)
      const rows = await listListEntries(db, t.id)
      out.print(json(), rows, () =>
        out.table(
          rows.map((r) => ({
            id: r.id,
            action: r.action,
            kind: r.kind,
            value: r.value,
            domain: r.domain ?? '(all)',
            note: r.note,
            by: r.createdBy,
          })),
        ),
      )
    })
  })
lists
  .command('remove <tenant> <id>')
  .description('remove an entry')
  .action(async (tenantName: string, id: string) => {
    await withDb(async ({ db }) => {
      const t = await findTenant(db, tenantName)
      await removeListEntry(db, { tenantId: t.id, id, actor: ACTOR })
      out.print(json(), { removed: id }, () => `removed ${id}`)
    })
  })

export async function main(argv: string[]): Promise<void> {
  try {
    await withAuditSource('cli', () => program.parseAsync(argv))
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode
      return
    }
    if (err instanceof MoatError) {
      if (json())
        console.log(JSON.stringify({ error: { code: err.code, message: err.message, hint: err.hint } }))
      else console.error(`error: ${err.message}${err.hint ? `\n  ${err.hint}` : ''}`)
      process.exitCode = 1
      return
    }
    if (err instanceof ConfigError) {
      console.error(err.message)
      process.exitCode = 2
      return
    }
    const code = (err as NodeJS.ErrnoException).code
    const listen = err as NodeJS.ErrnoException & { address?: string; port?: number }
    if (listen.syscall === 'listen' && (code === 'EADDRINUSE' || code === 'EACCES')) {
      const why = code === 'EADDRINUSE' ? 'the address is already in use' : 'permission denied'
      console.error(
        `error: cannot listen on ${listen.address}:${listen.port}: ${why}\n  stop the other server or choose another port with MOAT_SMTP_PORT`,
      )
      process.exitCode = 1
      return
    }
    if (code === 'ECONNREFUSED') {
      console.error(`error: cannot reach the database (${(err as Error).message}); check DATABASE_URL`)
      process.exitCode = 1
      return
    }
    console.error(err)
    process.exitCode = 1
  }
}
