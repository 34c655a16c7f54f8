import { sql } from 'drizzle-orm'
import {
  bigint,
  bigserial,
  boolean,
  customType,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  real,
  text,
  timestamp,
  uniqueIndex,
} from 'drizzle-orm/pg-core'

const createdAt = () => timestamp('created_at', { withTimezone: true }).notNull().defaultNow()

/** A customer. Every other row carries its `tenant_id`, and every query filters on it. */
export const tenants = pgTable('tenants', {
  id: text('id').primaryKey(),
  name: text('name').notNull().unique(),
  /**
   * `active` or `suspended`. A suspended tenant's mail is still accepted, scanned and queued, but
   * not delivered until it is resumed; its outbound submission is refused with a 4xx.
   */
  status: text('status').notNull().default('active'),
  /** why it is suspended: `operator` or `billing`; each lifts only its own */
  suspendedReason: text('suspended_reason'),
  suspendedNote: text('suspended_note'),
  suspendedAt: timestamp('suspended_at', { withTimezone: true }),
  /** the last resumption: the delivery give-up clock of mail held while suspended restarts here */
  resumedAt: timestamp('resumed_at', { withTimezone: true }),
  /** the sender pool its outbound mail leaves through; null: the operator's default pool */
  senderPool: text('sender_pool'),
  /** outbound mail scoring at or above this is held; null: MOAT_OUTBOUND_SPAM_THRESHOLD */
  outboundSpamThreshold: real('outbound_spam_threshold'),
  /** bumped whenever the tenant's spam-model overlay changes, so scan workers know to reload it */
  spamModelVersion: integer('spam_model_version').notNull().default(0),
  /** every accepted message is archived unless the tenant turns this off */
  archiveEnabled: boolean('archive_enabled').notNull().default(true),
  /**
   * how long archived messages are kept, in days (30, 365, 2557 …); null keeps them for ever. A plain
   * setting: the API changes it, and billing may set it from the tenant's plan.
   */
  archiveRetentionDays: integer('archive_retention_days'),
  createdAt: createdAt(),
})

/**
 * A customer domain. `pending` until the TXT token is seen in DNS (or an operator forces it),
 * then `verified`; `active` once its MX records point at Moat. Mail is accepted for verified and
 * active domains only.
 */
export const domains = pgTable(
  'domains',
  {
    id: text('id').primaryKey(),
    tenantId: text('tenant_id')
      .notNull()
      .references(() => tenants.id),
    name: text('name').notNull(),
    status: text('status').notNull().default('pending'),
    verificationToken: text('verification_token').notNull(),
    verifiedAt: timestamp('verified_at', { withTimezone: true }),
    /** `dns` or `operator` */
    verifiedBy: text('verified_by'),
    mxPointsAtMoat: boolean('mx_points_at_moat'),
    lastCheckAt: timestamp('last_check_at', { withTimezone: true }),
    lastCheckResult: text('last_check_result'),
    /** since when an active domain's MX records no longer name Moat (reported, cleared when they do again) */
    mxDriftAt: timestamp('mx_drift_at', { withTimezone: true }),
    createdAt: createdAt(),
  },
  (t) => [
    uniqueIndex('domains_tenant_name').on(t.tenantId, t.name),
    // a domain can be verified by one tenant only
    uniqueIndex('domains_verified_name').on(t.name).where(sql`verified_at is not null`),
    index('domains_name').on(t.name),
  ],
)

/** The customer's own mail servers for a domain, tried by ascending priority. */
export const routes = pgTable(
  'routes',
  {
    id: text('id').primaryKey(),
    tenantId: text('tenant_id')
      .notNull()
      .references(() => tenants.id),
    domainId: text('domain_id')
      .notNull()
      .references(() => domains.id, { onDelete: 'cascade' }),
    host: text('host').notNull(),
    port: integer('port').notNull().default(25),
    priority: integer('priority').notNull().default(10),
    /** `opportunistic` (STARTTLS when offered) or `required` (no delivery without STARTTLS) */
    tls: text('tls').notNull().default('opportunistic'),
    /** set: this destination is only for this one recipient address, instead of the domain's others */
    recipient: text('recipient'),
    createdAt: createdAt(),
  },
  (t) => [index('routes_domain').on(t.domainId)],
)

/**
 * One accepted message as seen by one tenant. An SMTP transaction whose recipients span tenants
 * makes one row per tenant, sharing `queue_id` and the raw object.
 */
export const messages = pgTable(
  'messages',
  {
    id: text('id').primaryKey(),
    tenantId: text('tenant_id')
      .notNull()
      .references(() => tenants.id),
    queueId: text('queue_id').notNull(),
    direction: text('direction').notNull().default('inbound'),
    /** received → queued → delivered | deferred | failed; or quarantined */
    status: text('status').notNull(),
    mailFrom: text('mail_from').notNull(),
    rcptTo: text('rcpt_to').array().notNull(),
    objectKey: text('object_key').notNull(),
    size: integer('size').notNull(),
    subject: text('subject'),
    messageIdHeader: text('message_id_header'),
    clientIp: text('client_ip'),
    clientHelo: text('client_helo'),
    /** outbound: the SMTP credential that submitted it (null when relayed by source IP, or a bounce) */
    credentialId: text('credential_id'),
    /** `clean`, `infected` or `not_scanned` once the scan has run */
    virusScan: text('virus_scan'),
    virusName: text('virus_name'),
    /** spam score and the action taken, once scanned */
    spamScore: real('spam_score'),
    /** `deliver`, `tag`, `quarantine` or `discard` */
    action: text('action'),
    /** header changes the delivered copy gets (the stored raw message is never changed) */
    headerRewrite: jsonb('header_rewrite').$type<HeaderRewrite>(),
    receivedAt: timestamp('received_at', { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index('messages_tenant_received').on(t.tenantId, t.receivedAt),
    index('messages_queue_id').on(t.queueId),
    index('messages_credential_received').on(t.credentialId, t.receivedAt),
  ],
)

/** Per-recipient delivery state of a message. */
export const recipients = pgTable(
  'recipients',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    messageId: text('message_id')
      .notNull()
      .references(() => messages.id, { onDelete: 'cascade' }),
    tenantId: text('tenant_id').notNull(),
    address: text('address').notNull(),
    /** the customer domain of an inbound recipient; null for outbound mail (a recipient on the Internet) */
    domainId: text('domain_id').references(() => domains.id),
    /** pending → delivered | deferred | failed; or quarantined */
    status: text('status').notNull().default('pending'),
    attempts: integer('attempts').notNull().default(0),
    lastReply: text('last_reply'),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index('recipients_message').on(t.messageId),
    // the retry backlog metric counts these
    index('recipients_deferred').on(t.status).where(sql`status = 'deferred'`),
  ],
)

/** Every transition of a message, so that its whole story can be told. */
export const messageEvents = pgTable(
  'message_events',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    messageId: text('message_id')
      .notNull()
      .references(() => messages.id, { onDelete: 'cascade' }),
    tenantId: text('tenant_id').notNull(),
    at: timestamp('at', { withTimezone: true }).notNull().defaultNow(),
    kind: text('kind').notNull(),
    detail: jsonb('detail').$type<Record<string, unknown>>().notNull().default({}),
  },
  (t) => [index('message_events_message').on(t.messageId, t.id)],
)

/** One SMTP delivery attempt to one destination server. */
export const deliveryAttempts = pgTable(
  'delivery_attempts',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    messageId: text('message_id')
      .notNull()
      .references(() => messages.id, { onDelete: 'cascade' }),
    tenantId: text('tenant_id').notNull(),
    at: timestamp('at', { withTimezone: true }).notNull().defaultNow(),
    recipients: text('recipients').array().notNull(),
    host: text('host').notNull(),
    port: integer('port').notNull(),
    /** `delivered`, `deferred` or `failed` */
    outcome: text('outcome').notNull(),
    code: integer('code'),
    reply: text('reply').notNull(),
    durationMs: integer('duration_ms').notNull(),
  },
  (t) => [index('delivery_attempts_message').on(t.messageId, t.id)],
)

/** Who did what: operator overrides, verifications, route changes. */
export const auditLog = pgTable(
  'audit_log',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    tenantId: text('tenant_id'),
    at: timestamp('at', { withTimezone: true }).notNull().defaultNow(),
    actor: text('actor').notNull(),
    action: text('action').notNull(),
    target: text('target').notNull(),
    detail: jsonb('detail').$type<Record<string, unknown>>().notNull().default({}),
    /** where the change came from: the API client's IP address, `cli`, or `system` for background jobs */
    source: text('source'),
  },
  (t) => [index('audit_log_tenant').on(t.tenantId, t.at)],
)

/**
 * The PostgreSQL queue: SQS semantics on one table. A job is visible when `visible_at <= now()`;
 * receiving it hides it for the visibility timeout and gives it a fresh `receipt`.
 */
export const queueJobs = pgTable(
  'queue_jobs',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    queue: text('queue').notNull(),
    body: jsonb('body').notNull(),
    visibleAt: timestamp('visible_at', { withTimezone: true }).notNull().defaultNow(),
    receiveCount: integer('receive_count').notNull().default(0),
    receipt: text('receipt'),
    sentAt: timestamp('sent_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index('queue_jobs_ready').on(t.queue, t.visibleAt),
    // finds the few jobs due for dead-lettering without walking the whole backlog
    index('queue_jobs_receives').on(t.queue, t.receiveCount),
  ],
)

/**
 * The transactional outbox of a queue that cannot join a database transaction (SQS). A job sent
 * (or a job deleted) inside a transaction is written here in that transaction; the outbox relay
 * carries committed rows to the queue and then removes them. A relay that dies mid-way leaves its
 * claimed rows to be taken again after `claimed_until`: a row may reach the queue twice, never
 * zero times, so consumers stay idempotent.
 */
export const queueOutbox = pgTable(
  'queue_outbox',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    queue: text('queue').notNull(),
    /** `send` (body, delay) or `delete` (receipt) */
    op: text('op').notNull(),
    body: jsonb('body'),
    delaySeconds: integer('delay_seconds').notNull().default(0),
    receipt: text('receipt'),
    createdAt: createdAt(),
    /** a relay holds the row until then; null: free to take */
    claimedUntil: timestamp('claimed_until', { withTimezone: true }),
    attempts: integer('attempts').notNull().default(0),
  },
  (t) => [index('queue_outbox_claimable').on(t.claimedUntil, t.id)],
)

/** What delivery changes in a message's header: added fields, forged results removed, subject prefix. */
export interface HeaderRewrite {
  /** complete header fields (folded, no trailing CRLF), added at the top */
  prepend: string[]
  /** `Authentication-Results` fields with this authserv-id that came from outside are removed */
  stripAuthservId?: string
  subjectPrefix?: string
}

/**
 * Spam policy of a tenant (`domain_id` null) or of one of its domains. `settings` holds only what
 * was set (`tagThreshold`, `quarantineThreshold`, `discardThreshold`, `subjectPrefix`); a key that
 * is absent inherits (domain → tenant → Moat's defaults) and a null turns that action off.
 */
export const policies = pgTable(
  'policies',
  {
    id: text('id').primaryKey(),
    tenantId: text('tenant_id')
      .notNull()
      .references(() => tenants.id),
    domainId: text('domain_id').references(() => domains.id, { onDelete: 'cascade' }),
    /** the thresholds and prefix as set; keys absent inherit, null means off */
    settings: jsonb('settings').$type<Record<string, number | string | null>>().notNull().default({}),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
    updatedBy: text('updated_by').notNull(),
  },
  (t) => [
    uniqueIndex('policies_tenant').on(t.tenantId).where(sql`domain_id is null`),
    uniqueIndex('policies_domain').on(t.tenantId, t.domainId).where(sql`domain_id is not null`),
  ],
)

/** Allow and block entries: sender address, sender domain, or connecting IP/CIDR. */
export const listEntries = pgTable(
  'list_entries',
  {
    id: text('id').primaryKey(),
    tenantId: text('tenant_id')
      .notNull()
      .references(() => tenants.id),
    domainId: text('domain_id').references(() => domains.id, { onDelete: 'cascade' }),
    /** `allow` or `block` */
    action: text('action').notNull(),
    /** `address`, `domain` or `ip` */
    kind: text('kind').notNull(),
    value: text('value').notNull(),
    note: text('note'),
    createdBy: text('created_by').notNull(),
    createdAt: createdAt(),
  },
  (t) => [
    index('list_entries_tenant').on(t.tenantId),
    uniqueIndex('list_entries_unique').on(t.tenantId, t.domainId, t.action, t.kind, t.value),
  ],
)

/** A tenant's corrections to the global spam model, per hashed feature. */
export const tenantModelWeights = pgTable(
  'tenant_model_weights',
  {
    tenantId: text('tenant_id')
      .notNull()
      .references(() => tenants.id),
    feature: integer('feature').notNull(),
    weight: real('weight').notNull(),
  },
  (t) => [primaryKey({ columns: [t.tenantId, t.feature] })],
)

/** Each ham/spam label a tenant gave (release, report), so that one message teaches once per label. */
export const spamFeedback = pgTable(
  'spam_feedback',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    tenantId: text('tenant_id')
      .notNull()
      .references(() => tenants.id),
    messageId: text('message_id')
      .notNull()
      .references(() => messages.id, { onDelete: 'cascade' }),
    /** `ham` or `spam` */
    label: text('label').notNull(),
    actor: text('actor').notNull(),
    at: timestamp('at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [uniqueIndex('spam_feedback_once').on(t.messageId, t.label)],
)

/** A person who signs in to the API or the portal; e-mail addresses are unique across Moat. */
export const users = pgTable(
  'users',
  {
    id: text('id').primaryKey(),
    tenantId: text('tenant_id')
      .notNull()
      .references(() => tenants.id),
    /** lower case */
    email: text('email').notNull(),
    /** `scrypt$N$r$p$salt$hash`, salt and hash in base64 */
    passwordHash: text('password_hash').notNull(),
    /** `owner`, `admin` or `viewer` */
    role: text('role').notNull(),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex('users_email').on(t.email), index('users_tenant').on(t.tenantId)],
)

/**
 * An invitation to join a tenant with a role. The token goes to the invitee once (in the API's
 * answer, for the inviter to pass on); only its SHA-256 is kept. Accepting creates the user.
 */
export const invitations = pgTable(
  'invitations',
  {
    id: text('id').primaryKey(),
    tenantId: text('tenant_id')
      .notNull()
      .references(() => tenants.id),
    email: text('email').notNull(),
    role: text('role').notNull(),
    tokenHash: text('token_hash').notNull(),
    invitedBy: text('invited_by').notNull(),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    acceptedAt: timestamp('accepted_at', { withTimezone: true }),
    revokedAt: timestamp('revoked_at', { withTimezone: true }),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex('invitations_token_hash').on(t.tokenHash), index('invitations_tenant').on(t.tenantId)],
)

/** A signed-in user's session; only the SHA-256 of the cookie's token is stored. */
export const sessions = pgTable(
  'sessions',
  {
    id: text('id').primaryKey(),
    tokenHash: text('token_hash').notNull(),
    tenantId: text('tenant_id')
      .notNull()
      .references(() => tenants.id),
    userId: text('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex('sessions_token_hash').on(t.tokenHash)],
)

/**
 * A key for programs. The key is shown once; Moat keeps its SHA-256 and a visible prefix
 * (`moat_live_ab12cd34`) that lets people tell their keys apart.
 */
export const apiKeys = pgTable(
  'api_keys',
  {
    id: text('id').primaryKey(),
    tenantId: text('tenant_id')
      .notNull()
      .references(() => tenants.id),
    name: text('name').notNull(),
    prefix: text('prefix').notNull(),
    keyHash: text('key_hash').notNull(),
    /** `admin` or `viewer` */
    role: text('role').notNull(),
    createdBy: text('created_by').notNull(),
    createdAt: createdAt(),
    lastUsedAt: timestamp('last_used_at', { withTimezone: true }),
    revokedAt: timestamp('revoked_at', { withTimezone: true }),
  },
  (t) => [uniqueIndex('api_keys_key_hash').on(t.keyHash), index('api_keys_tenant').on(t.tenantId)],
)

/**
 * An `Idempotency-Key` the API has seen, per tenant: the request's fingerprint (method, path,
 * body) and, once answered, the answer to replay. `status` is null while the first request runs.
 * Rows older than 24 hours no longer count and are deleted as the tenant sends new keys.
 */
export const apiIdempotency = pgTable(
  'api_idempotency',
  {
    tenantId: text('tenant_id')
      .notNull()
      .references(() => tenants.id),
    key: text('key').notNull(),
    fingerprint: text('fingerprint').notNull(),
    status: integer('status'),
    contentType: text('content_type'),
    body: text('body'),
    createdAt: createdAt(),
  },
  (t) => [primaryKey({ columns: [t.tenantId, t.key] }), index('api_idempotency_created').on(t.createdAt)],
)

/** PostgreSQL's full-text document type; written and read only through SQL functions. */
const tsvector = customType<{ data: string }>({ dataType: () => 'tsvector' })

/**
 * The archive's index: one row per archived message (per tenant). The raw message is an immutable
 * object at `object_key` (`archive/<tenant>/<yyyy>/<mm>/<dd>/<message id>.eml`). `search` is the
 * full-text document (subject, addresses, attachment names, body text) built with `language`, the
 * text-search configuration the message's `Content-Language` names, or `simple`. `addresses` holds
 * every envelope and header address, lower case, for trigram (`pg_trgm`) matching. The GIN indexes
 * and their extensions (`pg_trgm`, `btree_gin`) are in the custom migration `archive_search`.
 */
export const archivedMessages = pgTable(
  'archived_messages',
  {
    id: text('id').primaryKey(),
    tenantId: text('tenant_id')
      .notNull()
      .references(() => tenants.id),
    /** the message log row it was archived from; the archive outlives the log, so no foreign key */
    messageId: text('message_id').notNull(),
    direction: text('direction').notNull(),
    objectKey: text('object_key').notNull(),
    sha256: text('sha256').notNull(),
    size: integer('size').notNull(),
    mailFrom: text('mail_from').notNull(),
    rcptTo: text('rcpt_to').array().notNull(),
    fromHeader: text('from_header'),
    toHeader: text('to_header'),
    ccHeader: text('cc_header'),
    subject: text('subject'),
    messageIdHeader: text('message_id_header'),
    /** the Date header, when it parses */
    sentAt: timestamp('sent_at', { withTimezone: true }),
    /** when Moat accepted it */
    receivedAt: timestamp('received_at', { withTimezone: true }).notNull(),
    archivedAt: timestamp('archived_at', { withTimezone: true }).notNull().defaultNow(),
    /** `clean`, `tagged`, `quarantined`, `discarded` or `virus` */
    verdict: text('verdict').notNull(),
    spamScore: real('spam_score'),
    attachmentNames: text('attachment_names').array().notNull().default(sql`'{}'::text[]`),
    hasAttachments: boolean('has_attachments').notNull().default(false),
    /** a text-search configuration name: `english`, `german` … or `simple` */
    language: text('language').notNull().default('simple'),
    /** the body as plain text, at most 64 KiB of UTF-8 */
    textExtract: text('text_extract').notNull().default(''),
    addresses: text('addresses').notNull().default(''),
    search: tsvector('search').notNull(),
  },
  (t) => [
    uniqueIndex('archived_messages_message').on(t.tenantId, t.messageId),
    index('archived_messages_tenant_received').on(t.tenantId, t.receivedAt, t.id),
    // the full-text and trigram indexes are GIN indexes on (tenant_id, …) through btree_gin, so that a
    // search reads only the tenant's entries: they need extensions, so they live in the custom
    // migration `archive_search`
  ],
)

/**
 * A legal hold: while it is not released, the retention purge leaves alone what it covers — all of
 * the tenant's archive (`scope` `tenant`) or the messages a search found when the hold was placed
 * (`scope` `messages`, listed in `archive_hold_items`).
 */
export const archiveHolds = pgTable(
  'archive_holds',
  {
    id: text('id').primaryKey(),
    tenantId: text('tenant_id')
      .notNull()
      .references(() => tenants.id),
    scope: text('scope').notNull(),
    reason: text('reason').notNull(),
    /** the search that chose the messages, for `messages` holds */
    query: jsonb('query').$type<Record<string, unknown>>(),
    messageCount: integer('message_count').notNull().default(0),
    createdBy: text('created_by').notNull(),
    createdAt: createdAt(),
    releasedAt: timestamp('released_at', { withTimezone: true }),
    releasedBy: text('released_by'),
  },
  (t) => [index('archive_holds_tenant').on(t.tenantId)],
)

export const archiveHoldItems = pgTable(
  'archive_hold_items',
  {
    holdId: text('hold_id')
      .notNull()
      .references(() => archiveHolds.id, { onDelete: 'cascade' }),
    tenantId: text('tenant_id').notNull(),
    archivedId: text('archived_id').notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.holdId, t.archivedId] }),
    index('archive_hold_items_archived').on(t.archivedId),
  ],
)

/** An `.mbox` export of a search, run in the background; its file is an object at `object_key`. */
export const archiveExports = pgTable(
  'archive_exports',
  {
    id: text('id').primaryKey(),
    tenantId: text('tenant_id')
      .notNull()
      .references(() => tenants.id),
    /** `running`, `done` or `failed` */
    status: text('status').notNull(),
    query: jsonb('query').$type<Record<string, unknown>>().notNull(),
    /** messages matching when the export started, and written so far */
    total: integer('total').notNull().default(0),
    written: integer('written').notNull().default(0),
    bytes: bigint('bytes', { mode: 'number' }).notNull().default(0),
    objectKey: text('object_key').notNull(),
    error: text('error'),
    createdBy: text('created_by').notNull(),
    createdAt: createdAt(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
    finishedAt: timestamp('finished_at', { withTimezone: true }),
  },
  (t) => [index('archive_exports_tenant').on(t.tenantId, t.createdAt)],
)
/** One volume tier of a plan: messages up to `upTo` (cumulative, null: no limit) cost `unitAmount` minor units per `unitSize` messages. */
export interface PlanTier {
  upTo: number | null
  unitAmount: number
  unitSize: number
}

/**
 * A billing plan, as data: operators add or change rows, not code. Prices are integer minor units
 * of `currency`. `tiers` are graduated (each message is priced by the tier it falls in);
 * `hard_cap_messages` makes the plan prepaid: a tenant that reaches it in a period is suspended
 * until the next period or another plan. The Stripe price ids link the plan to the flat fee and
 * the metered usage price configured in Stripe.
 */
export const plans = pgTable('plans', {
  id: text('id').primaryKey(),
  name: text('name').notNull(),
  description: text('description').notNull().default(''),
  currency: text('currency').notNull().default('usd'),
  monthlyFee: integer('monthly_fee').notNull().default(0),
  tiers: jsonb('tiers').$type<PlanTier[]>().notNull().default([]),
  hardCapMessages: integer('hard_cap_messages'),
  archiveRetentionDays: integer('archive_retention_days').notNull().default(30),
  maxDomains: integer('max_domains'),
  /** the plan of tenants that never chose one; exactly one row should have it */
  isDefault: boolean('is_default').notNull().default(false),
  /** false: kept for tenants already on it, not offered any more */
  available: boolean('available').notNull().default(true),
  stripeFlatPriceId: text('stripe_flat_price_id'),
  stripeMeteredPriceId: text('stripe_metered_price_id'),
  createdAt: createdAt(),
})

/**
 * A tenant's billing state: its plan and, when Stripe is configured, its customer and
 * subscription. `stripe_subscription_event_at` is the `created` time of the last subscription
 * event applied, so that an older event arriving late changes nothing.
 */
export const billingAccounts = pgTable(
  'billing_accounts',
  {
    tenantId: text('tenant_id')
      .primaryKey()
      .references(() => tenants.id),
    planId: text('plan_id')
      .notNull()
      .references(() => plans.id),
    stripeCustomerId: text('stripe_customer_id'),
    stripeSubscriptionId: text('stripe_subscription_id'),
    /** Stripe's subscription status: incomplete, active, past_due, canceled, … */
    subscriptionStatus: text('subscription_status'),
    stripeSubscriptionEventAt: timestamp('stripe_subscription_event_at', { withTimezone: true }),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [uniqueIndex('billing_accounts_customer').on(t.stripeCustomerId)],
)

/**
 * One usage event per scanned message (the message id is the key, so a job delivered twice
 * counts once). `verdict` is the scan's action: deliver, tag, quarantine or discard.
 */
export const usageEvents = pgTable(
  'usage_events',
  {
    messageId: text('message_id').primaryKey(),
    tenantId: text('tenant_id')
      .notNull()
      .references(() => tenants.id),
    direction: text('direction').notNull(),
    verdict: text('verdict').notNull(),
    size: integer('size').notNull(),
    at: timestamp('at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index('usage_events_tenant_at').on(t.tenantId, t.at)],
)

/**
 * Usage rolled up per tenant per UTC day (`granularity` `day`) and per billing period (`month`,
 * calendar months in UTC), incremented in the transaction that records each usage event, so that
 * reading usage never scans events.
 */
export const usageCounters = pgTable(
  'usage_counters',
  {
    tenantId: text('tenant_id')
      .notNull()
      .references(() => tenants.id),
    granularity: text('granularity').notNull(),
    /** `YYYY-MM-DD`: the day, or the first day of the month */
    periodStart: text('period_start').notNull(),
    messages: integer('messages').notNull().default(0),
    inbound: integer('inbound').notNull().default(0),
    outbound: integer('outbound').notNull().default(0),
    bytes: bigint('bytes', { mode: 'number' }).notNull().default(0),
    delivered: integer('delivered').notNull().default(0),
    tagged: integer('tagged').notNull().default(0),
    quarantined: integer('quarantined').notNull().default(0),
    discarded: integer('discarded').notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.tenantId, t.granularity, t.periodStart] })],
)

/**
 * A batch of usage reported to Stripe as one meter event. The row is committed before the call,
 * with the identifier Stripe deduplicates on, and marked `reported_at` after; a batch left
 * unreported by a crash or an error is sent again with the same identifier, never as a new one.
 */
export const usageReports = pgTable(
  'usage_reports',
  {
    tenantId: text('tenant_id')
      .notNull()
      .references(() => tenants.id),
    periodStart: text('period_start').notNull(),
    batch: integer('batch').notNull(),
    quantity: integer('quantity').notNull(),
    identifier: text('identifier').notNull(),
    stripeCustomerId: text('stripe_customer_id').notNull(),
    createdAt: createdAt(),
    reportedAt: timestamp('reported_at', { withTimezone: true }),
    lastError: text('last_error'),
  },
  (t) => [primaryKey({ columns: [t.tenantId, t.periodStart, t.batch] })],
)

/**
 * Stripe invoices as the webhooks told them: `status` is `paid`, `payment_failed` or Stripe's
 * own status. `event_at` is the `created` time of the last event applied; `paid` is final.
 */
export const billingInvoices = pgTable(
  'billing_invoices',
  {
    id: text('id').primaryKey(),
    tenantId: text('tenant_id')
      .notNull()
      .references(() => tenants.id),
    status: text('status').notNull(),
    currency: text('currency').notNull(),
    amountDue: integer('amount_due').notNull(),
    amountPaid: integer('amount_paid').notNull(),
    hostedInvoiceUrl: text('hosted_invoice_url'),
    firstFailedAt: timestamp('first_failed_at', { withTimezone: true }),
    eventAt: timestamp('event_at', { withTimezone: true }).notNull(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index('billing_invoices_tenant').on(t.tenantId, t.status)],
)

/** Every Stripe webhook event handled, by its id: a second delivery of the same event does nothing. */
export const stripeEvents = pgTable('stripe_events', {
  id: text('id').primaryKey(),
  type: text('type').notNull(),
  tenantId: text('tenant_id'),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull(),
  receivedAt: timestamp('received_at', { withTimezone: true }).notNull().defaultNow(),
})

/**
 * SMTP AUTH credentials for outbound submission. The password is 256 random bits shown once;
 * Moat keeps its SHA-256, as for API keys. The username is the credential's id.
 */
export const smtpCredentials = pgTable(
  'smtp_credentials',
  {
    id: text('id').primaryKey(),
    tenantId: text('tenant_id')
      .notNull()
      .references(() => tenants.id),
    name: text('name').notNull(),
    secretHash: text('secret_hash').notNull(),
    /** sender domains this credential may use (lower case); null: any verified domain of the tenant */
    allowedDomains: text('allowed_domains').array(),
    /** set when Moat suspended it (a sending spike, a burst of held spam) or an admin did; cleared on re-enable */
    suspendedAt: timestamp('suspended_at', { withTimezone: true }),
    suspendedReason: text('suspended_reason'),
    createdBy: text('created_by').notNull(),
    createdAt: createdAt(),
    lastUsedAt: timestamp('last_used_at', { withTimezone: true }),
    revokedAt: timestamp('revoked_at', { withTimezone: true }),
  },
  (t) => [index('smtp_credentials_tenant').on(t.tenantId)],
)

/** Source networks (IP or CIDR) from which a tenant's own mail servers may relay without AUTH. */
export const relayNetworks = pgTable(
  'relay_networks',
  {
    id: text('id').primaryKey(),
    tenantId: text('tenant_id')
      .notNull()
      .references(() => tenants.id),
    /** `192.0.2.10/32`, `2001:db8::/48` */
    cidr: text('cidr').notNull(),
    note: text('note'),
    createdBy: text('created_by').notNull(),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex('relay_networks_cidr').on(t.cidr), index('relay_networks_tenant').on(t.tenantId)],
)

/**
 * A DKIM key of a customer domain. Outbound mail from the domain is signed with its newest key
 * once the key's TXT record is seen in DNS (`published_at`), or when an operator forces it.
 */
export const dkimKeys = pgTable(
  'dkim_keys',
  {
    id: text('id').primaryKey(),
    tenantId: text('tenant_id')
      .notNull()
      .references(() => tenants.id),
    domainId: text('domain_id')
      .notNull()
      .references(() => domains.id, { onDelete: 'cascade' }),
    selector: text('selector').notNull(),
    /** `rsa-sha256` or `ed25519-sha256` */
    algorithm: text('algorithm').notNull(),
    /** PKCS#8 PEM; never leaves Moat */
    privateKey: text('private_key').notNull(),
    /** the `p=` value of the TXT record */
    publicKey: text('public_key').notNull(),
    publishedAt: timestamp('published_at', { withTimezone: true }),
    /** an operator's override: sign even though the record is not seen */
    forced: boolean('forced').notNull().default(false),
    lastCheckAt: timestamp('last_check_at', { withTimezone: true }),
    lastCheckResult: text('last_check_result'),
    createdBy: text('created_by').notNull(),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex('dkim_keys_selector').on(t.domainId, t.selector)],
)

/**
 * Things a tenant should hear about (outbound mail held, a credential suspended), kept for
 * webhooks to pick up: `delivered_at` is null until one has.
 */
export const tenantEvents = pgTable(
  'tenant_events',
  {
    id: text('id').primaryKey(),
    tenantId: text('tenant_id')
      .notNull()
      .references(() => tenants.id),
    /** `outbound.held`, `outbound.virus`, `credential.suspended` */
    kind: text('kind').notNull(),
    payload: jsonb('payload').$type<Record<string, unknown>>().notNull().default({}),
    createdAt: createdAt(),
    deliveredAt: timestamp('delivered_at', { withTimezone: true }),
  },
  (t) => [index('tenant_events_tenant').on(t.tenantId, t.id)],
)
