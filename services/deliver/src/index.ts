export { type ProbeResult, probeSmtp } from './probe'
export { type Destination, type SendOutcome, SmtpClient } from './smtp-client'
export { backoffSeconds, type DeliverDeps, deliverOne, startDeliverWorker } from './worker'
