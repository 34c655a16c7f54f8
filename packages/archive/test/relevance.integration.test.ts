import path from 'node:path'
import { LocalObjectStore } from '@moat/blobstore'
import { archivedMessages } from '@moat/db'
import { eq } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { indexMessage, searchArchive } from '../src/index'
import { type ArchiveFixture, archiveFixture } from './fixtures'

/**
 * Search relevance on a small labelled set: realistic business mail, including near misses that
 * share words with the right answer, and ten queries a customer would type, each with the one
 * message that must come first when sorted by relevance (three of them match several messages,
 * so the ranking decides: subject words weigh more than body words).
 */

const corpus: Record<string, { from: string; subject: string; body: string; headers?: string[] }> = {
  invoice: {
    from: 'billing@northwind.example',
    subject: 'Invoice INV-2291 for October services',
    body: 'Dear customer, please find invoice INV-2291 attached. The amount of 4,250.00 EUR is due on 30 November. Bank transfer details are on the invoice.',
    headers: ['Content-Language: en'],
  },
  invoiceReminder: {
    from: 'billing@northwind.example',
    subject: 'Payment reminder',
    body: 'This is a friendly reminder that the payment for an earlier invoice is overdue. If you already paid, ignore this message.',
  },
  contract: {
    from: 'legal@contoso.example',
    subject: 'Signed master services agreement',
    body: 'Attached is the countersigned master services agreement. Clause 12 covers termination and clause 14 limitation of liability.',
  },
  contractDraft: {
    from: 'sales@contoso.example',
    subject: 'Draft proposal for next year',
    body: 'Here is a first draft of our proposal. Pricing may change before we send the agreement.',
  },
  outage: {
    from: 'noc@hosting.example',
    subject: 'Incident report: database outage on 12 March',
    body: 'Between 02:10 and 03:45 UTC the primary database cluster was unavailable. Root cause: a failed storage controller. Customers saw errors on checkout.',
  },
  maintenance: {
    from: 'noc@hosting.example',
    subject: 'Planned maintenance window',
    body: 'We will upgrade the load balancers on Saturday. No downtime is expected for the database.',
  },
  password: {
    from: 'security@okta-corp.example',
    subject: 'Your password was changed',
    body: 'The password for your account was changed from a new device. If this was not you, reset it immediately.',
  },
  lunch: {
    from: 'jane.doe@customer.test',
    subject: 'Lunch on Friday?',
    body: 'Shall we try the new Thai place near the station on Friday at noon?',
  },
  shipping: {
    from: 'orders@parcel.example',
    subject: 'Your order 88123 has shipped',
    body: 'Tracking number 1Z999AA10123456784. Expected delivery: Thursday. Order 88123 contains 3 items.',
  },
  resume: {
    from: 'm.garcia@gmail.example',
    subject: 'Application for the backend engineer position',
    body: 'Please find my resume attached. I have eight years of experience with PostgreSQL and TypeScript.',
  },
  newsletter: {
    from: 'news@techweekly.example',
    subject: 'This week in databases',
    body: 'PostgreSQL 18 released, a database deep dive into indexes, and how to tune autovacuum for large tables.',
  },
  german: {
    from: 'buchhaltung@lieferant.example',
    subject: 'Mahnung: offene Rechnungen',
    body: 'Sehr geehrte Damen und Herren, die Rechnungen vom September sind weiterhin unbezahlt.',
    headers: ['Content-Language: de'],
  },
  french: {
    from: 'contact@fournisseur.example',
    subject: 'Confirmation de commande',
    body: 'Nous vous confirmons la réception de votre commande et la livraison des marchandises la semaine prochaine.',
    headers: ['Content-Language: fr'],
  },
  quarterly: {
    from: 'cfo@customer.test',
    subject: 'Q3 board deck',
    body: 'Attached are the Q3 results for the board meeting: revenue up 12%, churn down to 2.1%.',
  },
}

/** query → the message that must rank first */
const labelled: [string, keyof typeof corpus, competitors?: number][] = [
  ['invoice', 'invoice', 2],
  ['overdue payment reminder', 'invoiceReminder'],
  ['agreement', 'contract', 2],
  ['database', 'outage', 3],
  ['password changed', 'password'],
  ['tracking number order 88123', 'shipping'],
  ['backend engineer resume', 'resume'],
  ['Rechnung unbezahlt', 'german'],
  ['livraison commande', 'french'],
  ['board meeting revenue', 'quarterly'],
]

let fx: ArchiveFixture
let tenantId: string
const idOf: Record<string, string> = {}
beforeAll(async () => {
  fx = await archiveFixture()
  const store = new LocalObjectStore(path.join(fx.dataDir, 'objects'))
  tenantId = await fx.tenant('relevance')
  for (const [label, m] of Object.entries(corpus)) {
    const raw = [
      `From: ${m.from}`,
      'To: team@customer.test',
      `Subject: ${m.subject}`,
      ...(m.headers ?? []),
      'Content-Type: text/plain; charset=utf-8',
      '',
      m.body,
      '',
    ].join('\n')
    const messageId = await fx.message(store, tenantId, raw)
    await indexMessage({ db: fx.database.db, store }, messageId)
    const [row] = await fx.database.db
      .select({ id: archivedMessages.id })
      .from(archivedMessages)
      .where(eq(archivedMessages.messageId, messageId))
    idOf[label] = row?.id ?? ''
  }
})
afterAll(async () => {
  await fx?.close()
})

describe('search relevance on a labelled set', () => {
  for (const [query, expected, matches] of labelled) {
    it(`"${query}" puts the ${expected} message first${matches ? ` of ${matches}` : ''}`, async () => {
      const { items } = await searchArchive(fx.database.db, {
        tenantId,
        filter: { q: query },
        sort: 'relevance',
        limit: 5,
      })
      const labelOf = Object.fromEntries(Object.entries(idOf).map(([k, v]) => [v, k]))
      expect(items.map((h) => labelOf[h.message.id])[0]).toBe(expected)
      expect(items[0]?.snippet).toContain('<mark>')
      // where several messages match, the ranking (not the filter) decided
      if (matches) expect(items).toHaveLength(matches)
    })
  }
})
