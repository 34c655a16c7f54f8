export { type IngestDeps, type IngestServer, type ScanJob, startIngest } from './server'
export { SmtpReply } from './smtp-replies'
