import type { ObjectStore } from '@moat/blobstore'
import { type DeliverJob, MoatError, recordAudit, recordEvent } from '@moat/core'
import { type Executor, messages, recipients, spamFeedback } from '@moat/db'
import { addToOverlay, type ContentModel, loadOverlay } from '@moat/detect'
import type { Queue } from '@moat/queue'
import { and, eq } from 'drizzle-orm'

export interface FeedbackDeps {
  db: Executor
  store: ObjectStore
  model: ContentModel
  deliverQueue: Queue<DeliverJob>
}

type MessageRow = typeof messages.$inferSelect

async function tenantMessage(db: Executor, id: string, tenantId: string | undefined): Promise<MessageRow> {
  const [m] = await db
    .select()
    .from(messages)
    .where(tenantId ? and(eq(messages.id, id), eq(messages.tenantId, tenantId)) : eq(messages.id, id))
  if (!m) throw new MoatError('not_found', `no message ${id}`, 'list messages with: moat messages')
  return m
}

/**
 * Records one label for a message and teaches the tenant's overlay, once per message and label:
 * a second identical report changes nothing. Returns whether the model learnt.
 */
async function teach(deps: FeedbackDeps, tx: Executor, m: MessageRow, label: 'ham' | 'spam', actor: string) {
  const inserted = await tx
    .insert(spamFeedback)
    .values({ tenantId: m.tenantId, messageId: m.id, label, actor })
    .onConflictDoNothing()
    .returning({ id: spamFeedback.id })
  if (!inserted.length) return { learnt: false, before: null, after: null }
  const features = deps.model.features(await deps.store.get(m.objectKey))
  const overlay = await loadOverlay(tx, m.tenantId, features)
  const before = deps.model.score(features, overlay)
  const delta = deps.model.learn(features, label === 'spam' ? 1 : 0, overlay)
  await addToOverlay(tx, m.tenantId, delta)
  const merged = new Map(overlay)
  for (const [f, w] of delta) merged.set(f, (merged.get(f) ?? 0) + w)
  return { learnt: true, before, after: deps.model.score(features, merged) }
}

/**
 * Releases a quarantined message: it is queued for delivery to every quarantined recipient and,
 * unless it was quarantined for a virus, the tenant's model learns that it is ham. An infected
 * message is released only with `force` (and never taught as ham).
 */
export async function releaseMessage(
  deps: FeedbackDeps,
  input: { messageId: string; tenantId?: string; actor: string; force?: boolean },
): Promise<{ message: MessageRow; learnt: boolean; scoreBefore: number | null; scoreAfter: number | null }> {
  return deps.db.transaction(async (tx) => {
    const m = await tenantMessage(tx, input.messageId, input.tenantId)
    if (m.status !== 'quarantined')
      throw new MoatError(
        'conflict',
        `message ${m.id} is ${m.status}, not quarantined`,
        'only quarantined mail can be released',
      )
    if (m.virusScan === 'infected' && !input.force)
      throw new MoatError(
        'conflict',
        `message ${m.id} carries a virus (${m.virusName})`,
        'release it anyway with --force, knowing it will reach the recipient',
      )
    const [updated] = await tx
      .update(messages)
      .set({ status: 'queued', updatedAt: new Date() })
      .where(and(eq(messages.id, m.id), eq(messages.status, 'quarantined')))
      .returning()
    if (!updated) throw new MoatError('conflict', `message ${m.id} was released by someone else just now`)
    const released = await tx
      .update(recipients)
      .set({ status: 'pending', updatedAt: new Date() })
      .where(and(eq(recipients.messageId, m.id), eq(recipients.status, 'quarantined')))
      .returning({ domainId: recipients.domainId })
    for (const domainId of new Set(released.map((r) => r.domainId)))
      if (domainId) await deps.deliverQueue.send({ messageId: m.id, domainId }, { tx })
    const taught =
      m.virusScan === 'infected'
        ? { learnt: false, before: null, after: null }
        : await teach(deps, tx, m, 'ham', input.actor)
    await recordAudit(tx, {
      tenantId: m.tenantId,
      actor: input.actor,
      action: 'quarantine.release',
      target: m.id,
      detail: {
        from: m.mailFrom,
        subject: m.subject,
        score: m.spamScore,
        ...(m.virusName ? { virus: m.virusName, forced: true } : {}),
      },
    })
    await recordEvent(tx, m, 'released', {
      actor: input.actor,
      recipients: released.length,
      learnt: taught.learnt ? 'ham' : null,
      ...(taught.before !== null ? { modelBefore: taught.before, modelAfter: taught.after } : {}),
    })
    return { message: updated, learnt: taught.learnt, scoreBefore: taught.before, scoreAfter: taught.after }
  })
}

/** "This is spam": the tenant's model learns it; the message itself is left as it is. */
export async function reportSpam(
  deps: FeedbackDeps,
  input: { messageId: string; tenantId?: string; actor: string },
): Promise<{ message: MessageRow; learnt: boolean; scoreBefore: number | null; scoreAfter: number | null }> {
  return deps.db.transaction(async (tx) => {
    const m = await tenantMessage(tx, input.messageId, input.tenantId)
    if (m.status === 'deleted') {
      throw new MoatError(
        'conflict',
        `message ${m.id} was deleted from the quarantine, and its content with it`,
        'report a message before deleting it',
      )
    }
    const taught = await teach(deps, tx, m, 'spam', input.actor)
    await recordEvent(tx, m, 'reported_spam', {
      actor: input.actor,
      learnt: taught.learnt,
      ...(taught.before !== null ? { modelBefore: taught.before, modelAfter: taught.after } : {}),
    })
    return { message: m, learnt: taught.learnt, scoreBefore: taught.before, scoreAfter: taught.after }
  })
}
