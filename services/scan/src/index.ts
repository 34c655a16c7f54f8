export { ClamdScanner, ScannerUnavailableError, type VirusScanner, type VirusScanResult } from './clamd'
export { type DeliverJob, type ScanDeps, type ScanJob, scanOne, startScanWorker, type Verdict } from './worker'
