-- Archive search: trigram matching for addresses and subjects (from/to/subject filters use ILIKE,
-- which these indexes serve). Self-contained: safe to run again, and on PGlite, which loads the
-- pg_trgm contrib extension (packages/db/src/embedded.ts).
CREATE EXTENSION IF NOT EXISTS pg_trgm;--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "archived_messages_addresses_trgm" ON "archived_messages" USING gin ("addresses" gin_trgm_ops);--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "archived_messages_subject_trgm" ON "archived_messages" USING gin ("subject" gin_trgm_ops);
