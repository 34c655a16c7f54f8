export { type Destination, type SendOutcome, SmtpClient } from './smtp-client'
export { backoffSeconds, type DeliverDeps, type DeliverJob, deliverOne, startDeliverWorker } from './worker'
