/**
 * `@moat/testkit`, loaded at run time, with the part of its API the benchmark uses typed here.
 *
 * Why not a plain `import { startHarness } from '@moat/testkit'`: tsc type-checks every source file
 * an import reaches, and `packages/testkit/src/peers.ts` does not type-check at the moment (it is
 * written against `@types/dns2`, but `dns2@3` ships its own, different types: no `Packet.RCODE`,
 * and `Packet.Resource` requires `toBuffer`). A static import would make the root
 * `tsc --noEmit -p tsconfig.json` fail on a file outside load-tests/. Once peers.ts compiles,
 * replace this file with `export * from '@moat/testkit'`.
 */
import type { Stack } from '@moat/cli'
import type { Config } from '@moat/config'

export interface Clamd {
  url: string
  port: number
  stop(): Promise<void>
}

export interface ReceivedMail {
  from: string
  to: string[]
  raw: Buffer
  secure: boolean
}

export interface SmtpSink {
  port: number
  messages: ReceivedMail[]
  waitFor(count: number, timeoutMs?: number): Promise<ReceivedMail[]>
  stop(): Promise<void>
}

export interface Harness {
  config: Config
  env: Record<string, string>
  stack: Stack
  database: { url: string; kind: 'pglite' | 'postgres'; close(): Promise<void> }
  dataDir: string
  smtpPort: number
  customer(input: {
    tenant: string
    domain: string
    destinations: string[]
  }): Promise<{ tenantId: string; domainId: string }>
  close(): Promise<void>
}

interface Testkit {
  startClamd(): Promise<Clamd>
  startSmtpSink(options?: { port?: number }): Promise<SmtpSink>
  startHarness(options?: { env?: Record<string, string> }): Promise<Harness>
}

const specifier: string = '@moat/testkit'
const testkit = (await import(specifier)) as Testkit

export const { startClamd, startSmtpSink, startHarness } = testkit
