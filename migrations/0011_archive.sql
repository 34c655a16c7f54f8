CREATE TABLE "archive_exports" (
	"id" text PRIMARY KEY NOT NULL,
	"tenant_id" text NOT NULL,
	"status" text NOT NULL,
	"query" jsonb NOT NULL,
	"total" integer DEFAULT 0 NOT NULL,
	"written" integer DEFAULT 0 NOT NULL,
	"bytes" bigint DEFAULT 0 NOT NULL,
	"object_key" text NOT NULL,
	"error" text,
	"created_by" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"finished_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "archive_hold_items" (
	"hold_id" text NOT NULL,
	"tenant_id" text NOT NULL,
	"archived_id" text NOT NULL,
	CONSTRAINT "archive_hold_items_hold_id_archived_id_pk" PRIMARY KEY("hold_id","archived_id")
);
--> statement-breakpoint
CREATE TABLE "archive_holds" (
	"id" text PRIMARY KEY NOT NULL,
	"tenant_id" text NOT NULL,
	"scope" text NOT NULL,
	"reason" text NOT NULL,
	"query" jsonb,
	"message_count" integer DEFAULT 0 NOT NULL,
	"created_by" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"released_at" timestamp with time zone,
	"released_by" text
);
--> statement-breakpoint
CREATE TABLE "archived_messages" (
	"id" text PRIMARY KEY NOT NULL,
	"tenant_id" text NOT NULL,
	"message_id" text NOT NULL,
	"direction" text NOT NULL,
	"object_key" text NOT NULL,
	"sha256" text NOT NULL,
	"size" integer NOT NULL,
	"mail_from" text NOT NULL,
	"rcpt_to" text[] NOT NULL,
	"from_header" text,
	"to_header" text,
	"cc_header" text,
	"subject" text,
	"message_id_header" text,
	"sent_at" timestamp with time zone,
	"received_at" timestamp with time zone NOT NULL,
	"archived_at" timestamp with time zone DEFAULT now() NOT NULL,
	"verdict" text NOT NULL,
	"spam_score" real,
	"attachment_names" text[] DEFAULT '{}'::text[] NOT NULL,
	"has_attachments" boolean DEFAULT false NOT NULL,
	"language" text DEFAULT 'simple' NOT NULL,
	"text_extract" text DEFAULT '' NOT NULL,
	"addresses" text DEFAULT '' NOT NULL,
	"search" "tsvector" NOT NULL
);
--> statement-breakpoint
ALTER TABLE "tenants" ADD COLUMN "archive_enabled" boolean DEFAULT true NOT NULL;--> statement-breakpoint
ALTER TABLE "tenants" ADD COLUMN "archive_retention_days" integer;--> statement-breakpoint
ALTER TABLE "archive_exports" ADD CONSTRAINT "archive_exports_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "archive_hold_items" ADD CONSTRAINT "archive_hold_items_hold_id_archive_holds_id_fk" FOREIGN KEY ("hold_id") REFERENCES "public"."archive_holds"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "archive_holds" ADD CONSTRAINT "archive_holds_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "archived_messages" ADD CONSTRAINT "archived_messages_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "archive_exports_tenant" ON "archive_exports" USING btree ("tenant_id","created_at");--> statement-breakpoint
CREATE INDEX "archive_hold_items_archived" ON "archive_hold_items" USING btree ("archived_id");--> statement-breakpoint
CREATE INDEX "archive_holds_tenant" ON "archive_holds" USING btree ("tenant_id");--> statement-breakpoint
CREATE UNIQUE INDEX "archived_messages_message" ON "archived_messages" USING btree ("tenant_id","message_id");--> statement-breakpoint
CREATE INDEX "archived_messages_tenant_received" ON "archived_messages" USING btree ("tenant_id","received_at","id");