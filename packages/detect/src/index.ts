export { type AuthInput, type AuthOutcome, authenticateMessage, authservIdOf } from './auth'
export { cachedLookup, type DnsLookup } from './dns'
export { checkBlocklists, type DnsblZone, dnsblName } from './dnsbl'
export { type Analysis, Detector, type DetectorOptions, type Envelope } from './engine'
export { ContentModel, loadOrBuildModel, type Overlay } from './model'
export { type Link, type MessageView, PARSE_LIMITS, readMessage } from './parse'
export {
  type Action,
  DEFAULT_POLICY,
  type Decision,
  decide,
  fmt,
  type ListEntry,
  ListEntryError,
  matchLists,
  normalizeListValue,
  type Policy,
  resolvePolicy,
  type Sender,
} from './policy'
export {
  CONTENT_MODEL_SCALE,
  contentScore,
  type Hit,
  isEncryptedArchive,
  runRules,
  SYMBOLS,
  type SymbolName,
} from './rules'
export { addToOverlay, loadListEntries, loadOverlay, loadPolicyLayers, TenantOverlays } from './store'
