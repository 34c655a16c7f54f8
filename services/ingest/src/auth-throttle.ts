/**
 * Brute-force protection for SMTP AUTH, per client IP and in memory (per process): after
 * `slowAfter` failures each further failed answer waits a second more (at most 5), and after
 * `blockAfter` failures the IP's AUTH is refused for `blockSeconds`. Failures older than the block
 * time are forgotten; a success clears the IP's count.
 */
export class AuthThrottle {
  private readonly failures = new Map<string, { count: number; first: number; blockedUntil: number }>()

  constructor(
    private readonly options: { slowAfter: number; blockAfter: number; blockSeconds: number },
    private readonly now: () => number = Date.now,
  ) {}

  /** Seconds left while the IP is refused; 0 when it may try. */
  blockedFor(ip: string): number {
    const entry = this.current(ip)
    if (!entry || entry.blockedUntil <= this.now()) return 0
    return Math.ceil((entry.blockedUntil - this.now()) / 1000)
  }

  /** Counts a failure; resolves with how long to wait before answering it (milliseconds). */
  failed(ip: string): number {
    const now = this.now()
    if (this.failures.size > 100_000) this.failures.clear()
    const entry = this.current(ip) ?? { count: 0, first: now, blockedUntil: 0 }
    entry.count += 1
    if (entry.count >= this.options.blockAfter) entry.blockedUntil = now + this.options.blockSeconds * 1000
    this.failures.set(ip, entry)
    return entry.count > this.options.slowAfter ? Math.min(entry.count - this.options.slowAfter, 5) * 1000 : 0
  }

  succeeded(ip: string): void {
    this.failures.delete(ip)
  }

  private current(ip: string) {
    const entry = this.failures.get(ip)
    if (
      entry &&
      entry.blockedUntil <= this.now() &&
      this.now() - entry.first > this.options.blockSeconds * 1000
    ) {
      this.failures.delete(ip)
      return undefined
    }
    return entry
  }
}
