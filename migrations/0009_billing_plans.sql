-- Moat's starting plans. Plans are rows: operators change prices or add plans with SQL
-- (or a later admin tool), not with code. Prices are integer minor units (cents).
INSERT INTO "plans" ("id", "name", "description", "currency", "monthly_fee", "tiers", "hard_cap_messages", "archive_retention_days", "max_domains", "is_default")
VALUES
  ('payg', 'Pay as you go', 'No monthly fee; $1.00 per 1,000 messages', 'usd', 0,
   '[{"upTo":null,"unitAmount":100,"unitSize":1000}]'::jsonb, NULL, 30, 5, true),
  ('volume', 'Volume', '$29 a month with 10,000 messages included, then $0.80 per 1,000', 'usd', 2900,
   '[{"upTo":10000,"unitAmount":0,"unitSize":1000},{"upTo":null,"unitAmount":80,"unitSize":1000}]'::jsonb, NULL, 90, 25, false),
  ('prepaid', 'Prepaid 50k', '$49 a month for up to 50,000 messages; mail waits beyond that until the next month', 'usd', 4900,
   '[{"upTo":50000,"unitAmount":0,"unitSize":1000}]'::jsonb, 50000, 365, 50, false)
ON CONFLICT ("id") DO NOTHING;
