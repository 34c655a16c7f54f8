-- Archive search indexes. Self-contained and safe to run again; PGlite loads both contrib extensions
-- (packages/db/src/embedded.ts).
-- pg_trgm: trigram matching for the from/to/subject filters (ILIKE '%…%').
-- btree_gin: lets one GIN index start with tenant_id, so a search reads only its tenant's entries.
CREATE EXTENSION IF NOT EXISTS pg_trgm;--> statement-breakpoint
CREATE EXTENSION IF NOT EXISTS btree_gin;--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "archived_messages_search" ON "archived_messages" USING gin ("tenant_id", "search");--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "archived_messages_addresses_trgm" ON "archived_messages" USING gin ("tenant_id", "addresses" gin_trgm_ops);--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "archived_messages_subject_trgm" ON "archived_messages" USING gin ("tenant_id", "subject" gin_trgm_ops);
