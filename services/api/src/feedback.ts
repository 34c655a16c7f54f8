import type { ObjectStore } from '@moat/blobstore'
import type { DeliverJob } from '@moat/core'
import type { ContentModel } from '@moat/detect'
import type { Queue } from '@moat/queue'
import type { FeedbackDeps } from '@moat/scan'
import type { ApiDeps } from './app'

/** What quarantine and feedback routes need beyond the database. */
export interface MailDeps {
  store: ObjectStore
  deliverQueue: Queue<DeliverJob>
  /** the spam model, loaded on first use (it takes a while and only release and report need it) */
  model: () => Promise<ContentModel>
}

/** Memoises `load`: the first call starts it, later ones share its promise (a failure is retried). */
export function lazy<T>(load: () => Promise<T>): () => Promise<T> {
  let pending: Promise<T> | undefined
  return () => {
    pending ??= load().catch((err) => {
      pending = undefined
      throw err
    })
    return pending
  }
}

export function mailDeps(deps: ApiDeps): MailDeps {
  if (!deps.mail) throw new Error('the API was started without the object store, model and deliver queue')
  return deps.mail
}

export async function feedbackDeps(deps: ApiDeps): Promise<FeedbackDeps> {
  const mail = mailDeps(deps)
  return { db: deps.db, store: mail.store, deliverQueue: mail.deliverQueue, model: await mail.model() }
}
