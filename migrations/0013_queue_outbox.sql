CREATE TABLE "queue_outbox" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"queue" text NOT NULL,
	"op" text NOT NULL,
	"body" jsonb,
	"delay_seconds" integer DEFAULT 0 NOT NULL,
	"receipt" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"claimed_until" timestamp with time zone,
	"attempts" integer DEFAULT 0 NOT NULL
);
--> statement-breakpoint
CREATE INDEX "queue_outbox_claimable" ON "queue_outbox" USING btree ("claimed_until","id");--> statement-breakpoint
CREATE INDEX "recipients_deferred" ON "recipients" USING btree ("status") WHERE status = 'deferred';