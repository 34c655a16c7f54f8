export { type IngestDeps, type IngestServer, startIngest } from './server'
export { SmtpReply } from './smtp-replies'
