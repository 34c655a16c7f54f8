import { isIP } from 'node:net'
import { arc, dkimVerify, dmarc, spf } from 'mailauth'
import type { DnsLookup } from './dns'
import { type Hit, hit } from './rules'

export interface AuthInput {
  /** envelope sender; '' for a bounce */
  mailFrom: string
  clientIp: string
  helo: string | null
}

export interface AuthOutcome {
  hits: Hit[]
  /** the `Authentication-Results:` header to add to the delivered message, folded, without CRLF */
  header: string
  summary: { spf: string; dkim: string; dmarc: string; arc: string }
}

/**
 * SPF for the connecting IP and envelope sender, DKIM signatures, DMARC alignment and policy, and
 * ARC, through mailauth and the given DNS lookup. `authservId` names this Moat in the result
 * header (RFC 8601); results from outside claiming it are stripped at delivery.
 */
export async function authenticateMessage(
  raw: Buffer,
  input: AuthInput & {
    /** From header addresses, when the caller has parsed them; unsigned mail then skips DKIM parsing */
    headerFrom?: string[]
    /** whether the header has DKIM-Signature or ARC-* fields (see `hasSignatures`) */
    signed?: boolean
  },
  options: { lookup: DnsLookup; authservId: string },
): Promise<AuthOutcome> {
  const resolver = options.lookup as never
  // mailauth's authenticate() without the Received-chain parsing and BIMI, and without a second
  // pass over the message when nothing in it is signed
  const dkimResult: DkimOutcome =
    input.signed === false && input.headerFrom
      ? {
          headerFrom: input.headerFrom,
          results: [
            {
              status: { result: 'none', comment: 'message not signed' },
              info: 'dkim=none (message not signed)',
            },
          ],
          arc: { chain: false },
        }
      : ((await dkimVerify(raw, { resolver, sender: input.mailFrom || undefined })) as DkimOutcome)
  const helo = input.helo ? (isIP(input.helo) ? `[${input.helo}]` : input.helo) : `[${input.clientIp}]`
  const spfResult = await spf({
    ip: input.clientIp,
    helo,
    sender: input.mailFrom || undefined,
    mta: options.authservId,
    resolver,
  } as never)
  const arcResult =
    dkimResult.arc.chain === false
      ? { status: { result: 'none' }, info: 'arc=none' }
      : ((await arc(dkimResult.arc as never, { resolver } as never)) as {
          status: { result: string }
          info?: string
        })
  const passing = dkimResult.results.filter((r) => r.status.result === 'pass')
  const dmarcResult =
    dkimResult.headerFrom.length > 0
      ? ((await dmarc({
          headerFrom: dkimResult.headerFrom,
          spfDomains: spfResult?.status.result === 'pass' && spfResult.domain ? [spfResult.domain] : [],
          dkimDomains: passing.map((r) => ({
            id: r.id,
            domain: r.signingDomain,
            aligned: r.status.aligned,
            underSized: r.status.underSized,
          })),
          arcResult,
          resolver,
        } as never)) as DmarcOutcome | false)
      : false

  const hits: Hit[] = []
  const spfStatus = spfResult ? spfResult.status.result : 'none'
  if (spfStatus === 'pass') hits.push(hit('SPF_PASS'))
  else if (spfStatus === 'fail') hits.push(hit('SPF_FAIL', spfResult?.domain))
  else if (spfStatus === 'softfail') hits.push(hit('SPF_SOFTFAIL'))
  else if (spfStatus === 'permerror') hits.push(hit('SPF_PERMERROR'))

  const signatures = dkimResult.results.filter((r) => r.status.result !== 'none')
  const aligned = passing.find((r) => r.status.aligned)
  let dkimStatus = signatures.length ? (signatures[0]?.status.result ?? 'none') : 'none'
  if (aligned) {
    dkimStatus = 'pass'
    hits.push(hit('DKIM_VALID_ALIGNED', aligned.signingDomain))
  } else if (passing.length) {
    dkimStatus = 'pass'
    hits.push(hit('DKIM_VALID', passing[0]?.signingDomain))
  } else if (signatures.some((r) => r.status.result === 'fail' || r.status.result === 'neutral')) {
    hits.push(hit('DKIM_INVALID', signatures[0]?.signingDomain))
  }

  let dmarcStatus = 'none'
  if (dmarcResult) {
    dmarcStatus = dmarcResult.status.result
    if (dmarcStatus === 'pass') hits.push(hit('DMARC_PASS', dmarcResult.domain))
    else if (dmarcStatus === 'fail') {
      const policy = (dmarcResult.policy ?? 'none').toLowerCase()
      const detail = `${dmarcResult.domain} p=${policy}`
      if (policy === 'reject') hits.push(hit('DMARC_REJECT', detail))
      else if (policy === 'quarantine') hits.push(hit('DMARC_QUARANTINE', detail))
      else hits.push(hit('DMARC_FAIL_NONE', detail))
    }
  }
  const arcStatus = arcResult.status.result
  if (arcStatus === 'fail') hits.push(hit('ARC_FAIL'))

  const rows = [
    ...dkimResult.results.map((r) => r.info),
    ...(spfResult ? [spfResult.info] : []),
    ...(arcResult.info ? [arcResult.info] : []),
    ...(dmarcResult ? [dmarcResult.info ?? ''] : []).filter(Boolean),
  ].map((row) => fold(row, 160))
  const header = `Authentication-Results: ${options.authservId};\r\n ${rows.join(';\r\n ')}`
  return { hits, header, summary: { spf: spfStatus, dkim: dkimStatus, dmarc: dmarcStatus, arc: arcStatus } }
}

interface DkimOutcome {
  headerFrom: string[]
  results: {
    id?: string
    signingDomain?: string
    info: string
    status: { result: string; comment?: string; aligned?: string | boolean; underSized?: number }
  }[]
  arc: { chain: unknown }
}

interface DmarcOutcome {
  status: { result: string }
  domain: string
  policy?: string
  info?: string
}

/** Folds a header row at spaces so that no line is longer than `width` (where a space allows it). */
function fold(row: string, width: number): string {
  const out: string[] = []
  let line = ''
  for (const word of row.split(' ')) {
    if (line && line.length + 1 + word.length > width) {
      out.push(line)
      line = word
    } else line = line ? `${line} ${word}` : word
  }
  out.push(line)
  return out.join('\r\n  ')
}

/** True when the header block has fields that need DKIM or ARC verification. */
export function hasSignatures(headers: ReadonlyMap<string, unknown>): boolean {
  for (const name of headers.keys()) if (name === 'dkim-signature' || name.startsWith('arc-')) return true
  return false
}

/** The authserv-id of an `Authentication-Results` header value (RFC 8601 §2.2), lower-cased. */
export function authservIdOf(value: string): string {
  return (value.split(';')[0] ?? '').trim().split(/\s+/)[0]?.toLowerCase() ?? ''
}
