export { startIngest, type IngestDeps, type IngestServer, type ScanJob } from './server'
export { SmtpReply } from './smtp-replies'
