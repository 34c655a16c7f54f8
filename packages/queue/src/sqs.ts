import {
  ChangeMessageVisibilityCommand,
  CreateQueueCommand,
  DeleteMessageBatchCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  type Message,
  type MessageAttributeValue,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SendMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs'
import { type Executor, queueOutbox } from '@moat/db'
import {
  encodeJob,
  MAX_JOB_BYTES,
  type Queue,
  type QueueDepth,
  type ReceivedJob,
  type ReceiveOptions,
  type SendOptions,
} from './types'

/** SQS refuses a DelaySeconds above 15 minutes. */
export const SQS_MAX_DELAY_SECONDS = 900
/** SQS long polls at most 20 seconds per request. */
const SQS_MAX_WAIT_SECONDS = 20
/** SQS hides a message at most 12 hours. */
const SQS_MAX_VISIBILITY_SECONDS = 43_200
/** message attributes that carry a long delay across re-sends */
const DUE_ATTRIBUTE = 'moat-due'
const SENT_ATTRIBUTE = 'moat-sent'

export interface SqsQueueOptions {
  client: SQSClient
  /** Moat's name for the queue (`scan`, `deliver`) */
  name: string
  /** the SQS queue's URL, e.g. `https://sqs.eu-west-1.amazonaws.com/123456789012/moat-scan` */
  queueUrl: string
  /** its dead-letter queue's URL; default: `queueUrl` + `-dead` */
  deadLetterUrl?: string
  /**
   * The database holding the outbox. `send` and `delete` with `tx` write outbox rows there (SQS
   * cannot join the transaction); without a database they refuse a `tx`.
   */
  db?: Executor
  /** Create the queue and its dead-letter queue (redrive after `maxReceives`) on first use. */
  create?: { maxReceives: number }
  /** the longest delay SQS is asked for; longer ones are re-sent (tests lower it) */
  maxDelaySeconds?: number
  /** told when an outbox row was written, so that a relay in this process can pick it up at once */
  onOutboxWrite?: () => void
}

/** One outbox row as the relay hands it over. */
export interface OutboxSend {
  body: unknown
  /** seconds from now */
  delaySeconds: number
  /** epoch milliseconds of the original send */
  sentAt: number
}

/**
 * A queue on Amazon SQS (or anything speaking its protocol) with the same contract as
 * `PostgresQueue`:
 *
 * - long polling (`waitSeconds`, in rounds of at most 20 s), batches of up to 10 per receive, and
 *   batched sends and deletes for the outbox relay;
 * - visibility timeout per receive and `changeVisibility` (which `consume()` uses to extend a long
 *   job's timeout every half timeout while it runs);
 * - dead-lettering by the queue's redrive policy (`maxReceiveCount`), which Terraform sets up, or
 *   this adapter with `create`;
 * - delays: SQS caps `DelaySeconds` at 15 minutes. A longer delay is sent as 15 minutes with the
 *   due time in a message attribute, and a receiver that gets it early re-sends it for the rest of
 *   the time (and deletes the early copy) instead of handing it out. Re-sending, not a visibility
 *   timeout, because each visibility bounce counts as a receive towards the redrive policy and
 *   would dead-letter a mail that is merely waiting for its next delivery try;
 * - bodies over `MAX_JOB_BYTES` are refused before anything is sent: jobs are references.
 *
 * SQS cannot take part in a database transaction, so `send(body, { tx })` and
 * `delete(receipt, { tx })` write to the `queue_outbox` table inside `tx`; `OutboxRelay` carries
 * the committed rows to SQS. Without `tx` both act on SQS at once.
 *
 * @example
 * const scan = new SqsQueue<ScanJob>({ client, name: 'scan', queueUrl: `${prefix}scan`, db })
 * await db.transaction(async (tx) => { ...; await scan.send({ messageId }, { tx }) }) // via the outbox
 */
export class SqsQueue<T> implements Queue<T> {
  readonly name: string
  readonly queueUrl: string
  readonly deadLetterUrl: string
  readonly client: SQSClient
  private readonly db: Executor | undefined
  private readonly maxDelaySeconds: number
  private readonly onOutboxWrite: (() => void) | undefined
  private ready: Promise<void> | undefined

  constructor(options: SqsQueueOptions) {
    this.client = options.client
    this.name = options.name
    this.queueUrl = options.queueUrl
    this.deadLetterUrl = options.deadLetterUrl ?? `${options.queueUrl}-dead`
    this.db = options.db
    this.maxDelaySeconds = Math.min(options.maxDelaySeconds ?? SQS_MAX_DELAY_SECONDS, SQS_MAX_DELAY_SECONDS)
    this.onOutboxWrite = options.onOutboxWrite
    if (options.create) {
      this.ready = this.createQueues(options.create.maxReceives)
      // awaited (and so reported) by the first operation; not an unhandled rejection before that
      this.ready.catch(() => {})
    }
  }

  /** Creates the dead-letter queue, then the queue with a redrive policy pointing at it. Idempotent. */
  private async createQueues(maxReceives: number): Promise<void> {
    const lastSegment = (url: string) => url.slice(url.lastIndexOf('/') + 1)
    const dead = await this.client.send(
      new CreateQueueCommand({ QueueName: lastSegment(this.deadLetterUrl) }),
    )
    const attrs = await this.client.send(
      new GetQueueAttributesCommand({ QueueUrl: dead.QueueUrl, AttributeNames: ['QueueArn'] }),
    )
    await this.client.send(
      new CreateQueueCommand({
        QueueName: lastSegment(this.queueUrl),
        Attributes: {
          RedrivePolicy: JSON.stringify({
            deadLetterTargetArn: attrs.Attributes?.QueueArn,
            maxReceiveCount: maxReceives,
          }),
        },
      }),
    )
  }

  /** Resolves once the queues exist (only waits with `create`). */
  async ensure(): Promise<void> {
    await this.ready
  }

  async send(body: T, options: SendOptions = {}): Promise<string> {
    const json = encodeJob(this.name, body)
    const delay = Math.max(0, Math.ceil(options.delaySeconds ?? 0))
    if (options.tx) {
      const [row] = await options.tx
        .insert(queueOutbox)
        .values({ queue: this.name, op: 'send', body: body as object, delaySeconds: delay })
        .returning({ id: queueOutbox.id })
      if (!row) throw new Error(`queue ${this.name}: outbox insert returned no row`)
      this.onOutboxWrite?.()
      return `outbox:${row.id}`
    }
    await this.ready
    const out = await this.client.send(
      new SendMessageCommand({
        QueueUrl: this.queueUrl,
        MessageBody: json,
        ...this.delayFields(delay, Date.now()),
      }),
    )
    return out.MessageId ?? ''
  }

  /** DelaySeconds and, for a delay beyond the cap, the attributes that carry it on. */
  private delayFields(
    delaySeconds: number,
    sentAt: number,
  ): { DelaySeconds: number; MessageAttributes?: Record<string, MessageAttributeValue> } {
    if (delaySeconds <= this.maxDelaySeconds) return { DelaySeconds: delaySeconds }
    return {
      DelaySeconds: this.maxDelaySeconds,
      MessageAttributes: {
        [DUE_ATTRIBUTE]: { DataType: 'Number', StringValue: String(Date.now() + delaySeconds * 1000) },
        [SENT_ATTRIBUTE]: { DataType: 'Number', StringValue: String(sentAt) },
      },
    }
  }

  /**
   * Sends jobs in batches of up to 10 and 256 KiB (the outbox relay's path). Resolves with the
   * indexes of the jobs SQS took; the others stay in the outbox for a later try.
   */
  async sendBatch(jobs: readonly OutboxSend[]): Promise<Set<number>> {
    await this.ready
    const sent = new Set<number>()
    let batch: { index: number; json: string }[] = []
    let bytes = 0
    const flush = async () => {
      if (!batch.length) return
      const entries = batch
      batch = []
      bytes = 0
      const out = await this.client.send(
        new SendMessageBatchCommand({
          QueueUrl: this.queueUrl,
          Entries: entries.map(({ index, json }) => ({
            Id: String(index),
            MessageBody: json,
            ...this.delayFields(jobs[index]?.delaySeconds ?? 0, jobs[index]?.sentAt ?? Date.now()),
          })),
        }),
      )
      for (const ok of out.Successful ?? []) sent.add(Number(ok.Id))
    }
    for (const [index, job] of jobs.entries()) {
      const json = encodeJob(this.name, job.body)
      // attributes of a long delay take a little room too
      const size = Buffer.byteLength(json) + 256
      if (batch.length === 10 || bytes + size > MAX_JOB_BYTES) await flush()
      batch.push({ index, json })
      bytes += size
    }
    await flush()
    return sent
  }

  async receive(options: ReceiveOptions = {}): Promise<ReceivedJob<T>[]> {
    await this.ready
    const max = Math.min(10, Math.max(1, options.max ?? 1))
    const visibility = Math.min(
      SQS_MAX_VISIBILITY_SECONDS,
      Math.max(0, Math.ceil(options.visibilityTimeout ?? 30)),
    )
    const deadline = Date.now() + (options.waitSeconds ?? 0) * 1000
    for (;;) {
      const remaining = deadline - Date.now()
      let messages: Message[]
      try {
        const out = await this.client.send(
          new ReceiveMessageCommand({
            QueueUrl: this.queueUrl,
            MaxNumberOfMessages: max,
            VisibilityTimeout: visibility,
            // whole seconds only; a short poll (0) may miss messages on real SQS, a long one does not
            WaitTimeSeconds: remaining > 0 ? Math.min(SQS_MAX_WAIT_SECONDS, Math.ceil(remaining / 1000)) : 0,
            MessageSystemAttributeNames: ['ApproximateReceiveCount', 'SentTimestamp'],
            MessageAttributeNames: [DUE_ATTRIBUTE, SENT_ATTRIBUTE],
          }),
          { abortSignal: options.signal },
        )
        messages = out.Messages ?? []
      } catch (err) {
        if (options.signal?.aborted) return []
        throw err
      }
      const jobs = await this.deferEarly(messages)
      if (jobs.length || Date.now() >= deadline || options.signal?.aborted) return jobs
    }
  }

  /** Hands out due messages; those received before their long delay is over are re-sent for the rest of it. */
  private async deferEarly(messages: Message[]): Promise<ReceivedJob<T>[]> {
    const jobs: ReceivedJob<T>[] = []
    const early: Message[] = []
    for (const m of messages) {
      const due = Number(m.MessageAttributes?.[DUE_ATTRIBUTE]?.StringValue ?? 0)
      if (due > Date.now() + 1000) {
        early.push(m)
        continue
      }
      const sentAt = Number(
        m.MessageAttributes?.[SENT_ATTRIBUTE]?.StringValue ?? m.Attributes?.SentTimestamp ?? 0,
      )
      jobs.push({
        id: m.MessageId ?? '',
        body: JSON.parse(m.Body ?? 'null') as T,
        receipt: m.ReceiptHandle ?? '',
        receiveCount: Number(m.Attributes?.ApproximateReceiveCount ?? 1),
        sentAt: new Date(sentAt || Date.now()),
      })
    }
    for (const m of early) {
      const due = Number(m.MessageAttributes?.[DUE_ATTRIBUTE]?.StringValue)
      const sentAt = Number(m.MessageAttributes?.[SENT_ATTRIBUTE]?.StringValue ?? Date.now())
      const rest = Math.ceil((due - Date.now()) / 1000)
      // re-send first, then delete the early copy: a crash in between duplicates, never loses
      await this.client.send(
        new SendMessageCommand({
          QueueUrl: this.queueUrl,
          MessageBody: m.Body ?? 'null',
          DelaySeconds: Math.min(rest, this.maxDelaySeconds),
          ...(rest > this.maxDelaySeconds
            ? {
                MessageAttributes: {
                  [DUE_ATTRIBUTE]: { DataType: 'Number', StringValue: String(due) },
                  [SENT_ATTRIBUTE]: { DataType: 'Number', StringValue: String(sentAt) },
                },
              }
            : {
                MessageAttributes: { [SENT_ATTRIBUTE]: { DataType: 'Number', StringValue: String(sentAt) } },
              }),
        }),
      )
      await this.client.send(
        new DeleteMessageCommand({ QueueUrl: this.queueUrl, ReceiptHandle: m.ReceiptHandle }),
      )
    }
    return jobs
  }

  async delete(receipt: string, options: { tx?: Executor } = {}): Promise<boolean> {
    if (options.tx) {
      await options.tx.insert(queueOutbox).values({ queue: this.name, op: 'delete', receipt })
      this.onOutboxWrite?.()
      return true
    }
    await this.ready
    try {
      await this.client.send(new DeleteMessageCommand({ QueueUrl: this.queueUrl, ReceiptHandle: receipt }))
      return true
    } catch (err) {
      if (isStaleReceipt(err)) return false
      throw err
    }
  }

  /** Deletes by receipts in batches of 10 (the outbox relay's path); resolves with the indexes done. */
  async deleteBatch(receipts: readonly string[]): Promise<Set<number>> {
    await this.ready
    const done = new Set<number>()
    for (let start = 0; start < receipts.length; start += 10) {
      const chunk = receipts.slice(start, start + 10)
      const out = await this.client.send(
        new DeleteMessageBatchCommand({
          QueueUrl: this.queueUrl,
          Entries: chunk.map((receipt, i) => ({ Id: String(start + i), ReceiptHandle: receipt })),
        }),
      )
      for (const ok of out.Successful ?? []) done.add(Number(ok.Id))
      // a receipt SQS no longer knows: the job came back to another receiver, which will find the
      // work done; nothing more to do for this row
      for (const failed of out.Failed ?? [])
        if (failed.Code === 'ReceiptHandleIsInvalid') done.add(Number(failed.Id))
    }
    return done
  }

  /**
   * With `tx` this acts at once all the same: a visibility change is not a state change that must
   * wait for a commit (the job is at worst handed out a little earlier, to an idempotent worker).
   */
  async changeVisibility(
    receipt: string,
    seconds: number,
    _options: { tx?: Executor } = {},
  ): Promise<boolean> {
    await this.ready
    try {
      await this.client.send(
        new ChangeMessageVisibilityCommand({
          QueueUrl: this.queueUrl,
          ReceiptHandle: receipt,
          VisibilityTimeout: Math.min(SQS_MAX_VISIBILITY_SECONDS, Math.max(0, Math.ceil(seconds))),
        }),
      )
      return true
    } catch (err) {
      if (isStaleReceipt(err)) return false
      throw err
    }
  }

  /** SQS's approximate counts; jobs still in the outbox are not counted. */
  async depth(): Promise<QueueDepth> {
    await this.ready
    const names = [
      'ApproximateNumberOfMessages',
      'ApproximateNumberOfMessagesDelayed',
      'ApproximateNumberOfMessagesNotVisible',
    ] as const
    const [main, dead] = await Promise.all(
      [this.queueUrl, this.deadLetterUrl].map((url) =>
        this.client
          .send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: [...names] }))
          .then((out) => out.Attributes ?? {})
          .catch((err: unknown) => {
            // a queue without a dead-letter queue has no dead jobs
            if (url === this.deadLetterUrl && isMissingQueue(err)) return {} as Record<string, string>
            throw err
          }),
      ),
    )
    const n = (attrs: Record<string, string> | undefined, name: (typeof names)[number]) =>
      Number(attrs?.[name] ?? 0)
    return {
      visible: n(main, 'ApproximateNumberOfMessages'),
      delayed: n(main, 'ApproximateNumberOfMessagesDelayed'),
      inFlight: n(main, 'ApproximateNumberOfMessagesNotVisible'),
      dead:
        n(dead, 'ApproximateNumberOfMessages') +
        n(dead, 'ApproximateNumberOfMessagesDelayed') +
        n(dead, 'ApproximateNumberOfMessagesNotVisible'),
    }
  }

  /** SQS publishes the age of the oldest message only to CloudWatch (`ApproximateAgeOfOldestMessage`); here: 0. */
  async oldestAgeSeconds(): Promise<number> {
    return 0
  }
}

function errorName(err: unknown): string {
  return (err as { name?: string; Code?: string })?.name ?? ''
}

function isStaleReceipt(err: unknown): boolean {
  return ['ReceiptHandleIsInvalid', 'MessageNotInflight', 'InvalidParameterValue'].includes(errorName(err))
}

function isMissingQueue(err: unknown): boolean {
  return ['QueueDoesNotExist', 'AWS.SimpleQueueService.NonExistentQueue'].includes(errorName(err))
}
