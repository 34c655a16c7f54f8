export { AuthThrottle } from './auth-throttle'
export { type IngestDeps, type IngestServer, startIngest } from './server'
export { SmtpReply } from './smtp-replies'
export { type SubmissionDeps, type SubmissionServer, startSubmission, submissionReply } from './submission'
