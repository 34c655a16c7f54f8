CREATE TABLE "list_entries" (
	"id" text PRIMARY KEY NOT NULL,
	"tenant_id" text NOT NULL,
	"domain_id" text,
	"action" text NOT NULL,
	"kind" text NOT NULL,
	"value" text NOT NULL,
	"note" text,
	"created_by" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "policies" (
	"id" text PRIMARY KEY NOT NULL,
	"tenant_id" text NOT NULL,
	"domain_id" text,
	"settings" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_by" text NOT NULL
);
--> statement-breakpoint
CREATE TABLE "spam_feedback" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"tenant_id" text NOT NULL,
	"message_id" text NOT NULL,
	"label" text NOT NULL,
	"actor" text NOT NULL,
	"at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "tenant_model_weights" (
	"tenant_id" text NOT NULL,
	"feature" integer NOT NULL,
	"weight" real NOT NULL,
	CONSTRAINT "tenant_model_weights_tenant_id_feature_pk" PRIMARY KEY("tenant_id","feature")
);
--> statement-breakpoint
ALTER TABLE "messages" ADD COLUMN "spam_score" real;--> statement-breakpoint
ALTER TABLE "messages" ADD COLUMN "action" text;--> statement-breakpoint
ALTER TABLE "messages" ADD COLUMN "header_rewrite" jsonb;--> statement-breakpoint
ALTER TABLE "list_entries" ADD CONSTRAINT "list_entries_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "list_entries" ADD CONSTRAINT "list_entries_domain_id_domains_id_fk" FOREIGN KEY ("domain_id") REFERENCES "public"."domains"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "policies" ADD CONSTRAINT "policies_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "policies" ADD CONSTRAINT "policies_domain_id_domains_id_fk" FOREIGN KEY ("domain_id") REFERENCES "public"."domains"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "spam_feedback" ADD CONSTRAINT "spam_feedback_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "spam_feedback" ADD CONSTRAINT "spam_feedback_message_id_messages_id_fk" FOREIGN KEY ("message_id") REFERENCES "public"."messages"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "tenant_model_weights" ADD CONSTRAINT "tenant_model_weights_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "list_entries_tenant" ON "list_entries" USING btree ("tenant_id");--> statement-breakpoint
CREATE UNIQUE INDEX "list_entries_unique" ON "list_entries" USING btree ("tenant_id","domain_id","action","kind","value");--> statement-breakpoint
CREATE UNIQUE INDEX "policies_tenant" ON "policies" USING btree ("tenant_id") WHERE domain_id is null;--> statement-breakpoint
CREATE UNIQUE INDEX "policies_domain" ON "policies" USING btree ("tenant_id","domain_id") WHERE domain_id is not null;--> statement-breakpoint
CREATE UNIQUE INDEX "spam_feedback_once" ON "spam_feedback" USING btree ("message_id","label");