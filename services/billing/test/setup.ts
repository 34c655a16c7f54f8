import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { loadConfig } from '@moat/config'
import { signup } from '@moat/core'
import { type Database, openDatabase, plans, runMigrations } from '@moat/db'
import { eq } from 'drizzle-orm'
// the file directly: the testkit index pulls in the whole stack
import { createTestDatabase, type TestDatabase } from '../../../packages/testkit/src/database'
import { type StripeStandIn, startStripeStandIn } from './stripe-standin'

export const WEBHOOK_SECRET = 'whsec_moat_test_secret'

export interface BillingTest {
  database: Database
  standIn: StripeStandIn
  /** configuration with Stripe pointed at the stand-in, webhooks on a free port */
  config: ReturnType<typeof loadConfig>
  tenant(name: string): Promise<string>
  close(): Promise<void>
}

/**
 * A fresh database (PGlite, or PostgreSQL at DATABASE_URL) with the seeded plans linked to Stripe
 * prices, and the Stripe stand-in.
 */
export async function startBillingTest(): Promise<BillingTest> {
  const testDb: TestDatabase = await createTestDatabase()
  await runMigrations(testDb.url)
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'moat-billing-'))
  const database = await openDatabase({ databaseUrl: testDb.url, dataDir, maxConnections: 4 })
  const standIn = await startStripeStandIn()
  // plans are rows: linking them to Stripe prices is an UPDATE, as an operator would do it
  for (const id of ['payg', 'volume', 'prepaid']) {
    await database.db
      .update(plans)
      .set({
        stripeFlatPriceId: id === 'payg' ? null : `price_${id}_fee`,
        stripeMeteredPriceId: `price_${id}_usage`,
      })
      .where(eq(plans.id, id))
  }
  const config = loadConfig({
    MOAT_STRIPE_SECRET_KEY: 'sk_test_moat_standin',
    MOAT_STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
    MOAT_STRIPE_API_URL: standIn.url,
    MOAT_STRIPE_PORTAL_RETURN_URL: 'https://portal.moat.test/billing',
    MOAT_BILLING_HOST: '127.0.0.1',
    MOAT_BILLING_PORT: '0',
    MOAT_BILLING_INTERVAL_SECONDS: '3600',
  })
  return {
    database,
    standIn,
    config,
    async tenant(name) {
      const { tenant } = await signup(database.db, {
        tenant: name,
        email: `owner@${name}.test`,
        password: 'a long password',
      })
      return tenant.id
    },
    async close() {
      await standIn.close()
      await database.close()
      await testDb.close()
      await fs.rm(dataDir, { recursive: true, force: true })
    },
  }
}
