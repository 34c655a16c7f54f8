import type { Config } from '@moat/config'
import { createResolver } from '@moat/core'
import { cachedLookup, Detector, loadOrBuildModel } from '@moat/detect'
import type { Logger } from '@moat/log'

/**
 * The spam detector the scan worker uses, from configuration: the content model file (built from
 * the bundled corpus on first start), Moat's resolver for authentication and blocklists, and the
 * configured blocklist zones. Null when MOAT_SPAM_SCAN=off.
 */
export function createDetector(config: Config, log: Logger): Detector | null {
  if (!config.scan.spamScan) {
    log.warn('spam detection is off (MOAT_SPAM_SCAN=off): mail is only scanned for viruses')
    return null
  }
  const model = loadOrBuildModel(config.scan.spamModelFile, log)
  return new Detector({
    model,
    lookup: cachedLookup(createResolver(config.dnsServers)),
    authservId: config.scan.authservId,
    dnsbl: config.scan.dnsblZones,
  })
}
