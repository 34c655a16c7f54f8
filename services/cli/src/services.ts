/** The services `moat start` can run; each also runs alone with `--only`. */
export const SERVICES = ['ingest', 'scan', 'deliver', 'api', 'billing'] as const
export type ServiceName = (typeof SERVICES)[number]
