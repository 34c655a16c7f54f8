import { type Config, ConfigError, loadConfig } from '@moat/config'
import {
  addDomain,
  createResolver,
  createTenant,
  findDomain,
  listDomains,
  listMessages,
  listRoutes,
  listTenants,
  MoatError,
  parseDestination,
  requiredRecords,
  setRoutes,
  showMessage,
  verifyDomain,
} from '@moat/core'
import { type Database, openDatabase, runMigrations } from '@moat/db'
import { createLogger } from '@moat/log'
import { Command, CommanderError, Option } from 'commander'
import * as out from './output'
import { SERVICES, type ServiceName, startStack } from './stack'

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
  .command('list')
  .description('list tenants')
  .action(async () => {
    await withDb(async ({ db }) => {
      const rows = await listTenants(db)
      out.print(json(), rows, () =>
        out.table(rows.map((t) => ({ name: t.name, id: t.id, status: t.status }))),
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

export async function main(argv: string[]): Promise<void> {
  try {
    await program.parseAsync(argv)
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
