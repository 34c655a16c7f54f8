export { ClamdScanner, ScannerUnavailableError, type VirusScanner, type VirusScanResult } from './clamd'
export { createDetector } from './detector'
export { type FeedbackDeps, releaseMessage, reportSpam } from './feedback'
export {
  CLAMD_BINARY,
  clamdAnswers,
  clamdPing,
  EICAR,
  EICAR_SIGNATURE,
  type LocalClamd,
  SYSTEM_SIGNATURES,
  startLocalClamd,
} from './local-clamd'
export {
  type ScanDeps,
  scanOne,
  startScanWorker,
  type Verdict,
} from './worker'
