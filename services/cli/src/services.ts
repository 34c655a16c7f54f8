/** The services `moat start` can run; each also runs alone with `--only`. */
export const SERVICES = ['ingest', 'submission', 'scan', 'deliver', 'api', 'billing'] as const
export type ServiceName = (typeof SERVICES)[number]
