import { authenticate } from 'mailauth'
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
  input: AuthInput,
  options: { lookup: DnsLookup; authservId: string },
): Promise<AuthOutcome> {
  const res = await authenticate(raw, {
    ip: input.clientIp,
    helo: input.helo ?? undefined,
    sender: input.mailFrom || undefined,
    mta: options.authservId,
    resolver: options.lookup as never,
    disableBimi: true,
  })
  const hits: Hit[] = []
  const spf = res.spf ? res.spf.status.result : 'none'
  if (spf === 'pass') hits.push(hit('SPF_PASS'))
  else if (spf === 'fail') hits.push(hit('SPF_FAIL', res.spf ? res.spf.domain : undefined))
  else if (spf === 'softfail') hits.push(hit('SPF_SOFTFAIL'))
  else if (spf === 'permerror') hits.push(hit('SPF_PERMERROR'))

  const dkimResults = res.dkim.results ?? []
  const passing = dkimResults.filter((r) => r.status.result === 'pass')
  const aligned = passing.find((r) => r.status.aligned)
  let dkim = dkimResults.length ? (dkimResults[0]?.status.result ?? 'none') : 'none'
  if (aligned) {
    dkim = 'pass'
    hits.push(hit('DKIM_VALID_ALIGNED', aligned.signingDomain))
  } else if (passing.length) {
    dkim = 'pass'
    hits.push(hit('DKIM_VALID', passing[0]?.signingDomain))
  } else if (dkimResults.some((r) => r.status.result === 'fail' || r.status.result === 'neutral')) {
    hits.push(hit('DKIM_INVALID', dkimResults[0]?.signingDomain))
  }

  let dmarc = 'none'
  if (res.dmarc) {
    dmarc = res.dmarc.status.result
    if (dmarc === 'pass') hits.push(hit('DMARC_PASS', res.dmarc.domain))
    else if (dmarc === 'fail') {
      const policy = (res.dmarc.policy ?? 'none').toLowerCase()
      const detail = `${res.dmarc.domain} p=${policy}`
      if (policy === 'reject') hits.push(hit('DMARC_REJECT', detail))
      else if (policy === 'quarantine') hits.push(hit('DMARC_QUARANTINE', detail))
      else hits.push(hit('DMARC_FAIL_NONE', detail))
    }
  }
  const arc = res.arc ? res.arc.status.result : 'none'
  if (arc === 'fail') hits.push(hit('ARC_FAIL'))

  const header =
    res.headers
      .split(/\r\n(?=\S)/)
      .find((h) => /^Authentication-Results:/i.test(h))
      ?.trimEnd() ?? `Authentication-Results: ${options.authservId}; none`
  return { hits, header, summary: { spf, dkim, dmarc, arc } }
}

/** The authserv-id of an `Authentication-Results` header value (RFC 8601 §2.2), lower-cased. */
export function authservIdOf(value: string): string {
  return (value.split(';')[0] ?? '').trim().split(/\s+/)[0]?.toLowerCase() ?? ''
}
