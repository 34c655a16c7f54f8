import type { EgressPath } from '@moat/config'

/** A pool's path as delivery uses it: a name, a weight, and either a local identity or a smart host. */
export type Egress = EgressPath

/** The implicit path when the operator configured no pool: straight to the MX, Moat's own address and name. */
export const DIRECT: Egress = { name: 'direct', weight: 1 }

interface Health {
  /** consecutive connection failures */
  failures: number
  /** out of rotation until then; after it, the path is probed with the next message */
  coolUntil: number
}

/**
 * Named pools of egress paths (`MOAT_SENDER_POOLS`): `default` for outbound mail, `inbound` for
 * delivery to customers' servers, any other name for tenants assigned to it (bulk, suspicious).
 * Messages spread over a pool's healthy paths by weight. A path that fails to connect rests for
 * the cool-down (doubling while it keeps failing, up to 16 times), then the next message probes
 * it: success puts it back, failure rests it again. Health is kept in memory, per process.
 */
export class SenderPools {
  private readonly health = new Map<string, Health>()

  constructor(
    private readonly pools: Record<string, Egress[]>,
    private readonly cooldownMs: number,
    private readonly random: () => number = Math.random,
    private readonly now: () => number = Date.now,
  ) {}

  /** Whether the operator configured this pool. */
  has(pool: string): boolean {
    return Boolean(this.pools[pool]?.length)
  }

  /**
   * The paths to try for one message, in order: one healthy (or due for a probe) path picked by
   * weight, then the other usable ones by weight, then resting ones as a last resort.
   */
  order(pool: string): Egress[] {
    const paths = this.pools[pool] ?? this.pools.default ?? [DIRECT]
    const now = this.now()
    const usable = paths.filter((p) => (this.health.get(key(pool, p))?.coolUntil ?? 0) <= now)
    const resting = paths
      .filter((p) => !usable.includes(p))
      .sort(
        (a, b) =>
          (this.health.get(key(pool, a))?.coolUntil ?? 0) - (this.health.get(key(pool, b))?.coolUntil ?? 0),
      )
    const ordered: Egress[] = []
    const left = [...usable]
    while (left.length) {
      const total = left.reduce((sum, p) => sum + p.weight, 0)
      let pick = this.random() * total
      let index = left.findIndex((p) => {
        pick -= p.weight
        return pick < 0
      })
      if (index < 0) index = left.length - 1
      ordered.push(...left.splice(index, 1))
    }
    return [...ordered, ...resting]
  }

  /** The path connected and the remote server answered. */
  succeeded(pool: string, path: Egress): void {
    this.health.delete(key(pool, path))
  }

  /** The path could not connect: it rests. */
  failed(pool: string, path: Egress): void {
    const k = key(pool, path)
    const h = this.health.get(k) ?? { failures: 0, coolUntil: 0 }
    h.failures += 1
    h.coolUntil = this.now() + this.cooldownMs * 2 ** Math.min(h.failures - 1, 4)
    this.health.set(k, h)
  }

  /** Paths resting now, for logs and tests. */
  resting(pool: string): string[] {
    const now = this.now()
    return (this.pools[pool] ?? [])
      .filter((p) => (this.health.get(key(pool, p))?.coolUntil ?? 0) > now)
      .map((p) => p.name)
  }
}

function key(pool: string, path: Egress): string {
  return `${pool}/${path.name}`
}
