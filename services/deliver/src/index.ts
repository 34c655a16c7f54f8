export { SmtpClient, type Destination, type SendOutcome } from './smtp-client'
export { backoffSeconds, type DeliverDeps, type DeliverJob, deliverOne, startDeliverWorker } from './worker'
