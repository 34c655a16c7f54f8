import { ApiProblem } from './problems'

/**
 * Fixed-window counters kept in memory, per process: with several API processes each counts on
 * its own, so the real budget is the limit times the processes. Good enough against password
 * guessing and runaway scripts; a shared store (Redis, PostgreSQL) would make it exact.
 */
export class RateLimiter {
  readonly #windows = new Map<string, { count: number; resetAt: number }>()

  constructor(
    readonly limit: number,
    readonly windowMs: number,
    readonly now: () => number = Date.now,
  ) {}

  /** Counts one hit for `key`; throws a 429 problem with `Retry-After` once the budget is spent. */
  hit(key: string, detail: string): void {
    const now = this.now()
    if (this.#windows.size > 10_000) {
      for (const [k, w] of this.#windows) if (w.resetAt <= now) this.#windows.delete(k)
    }
    let window = this.#windows.get(key)
    if (!window || window.resetAt <= now) {
      window = { count: 0, resetAt: now + this.windowMs }
      this.#windows.set(key, window)
    }
    window.count++
    if (window.count > this.limit) {
      const retryAfter = Math.max(1, Math.ceil((window.resetAt - now) / 1000))
      throw new ApiProblem(429, `${detail}; try again in ${retryAfter} s`, 'rate-limited', {
        'retry-after': String(retryAfter),
      })
    }
  }
}

export interface RateLimits {
  /** sign-in attempts per e-mail address, and per client IP, in `loginWindowMs` (10) */
  loginAttempts?: number
  /** 15 minutes */
  loginWindowMs?: number
  /** requests per minute per API key (MOAT_API_RATE_PER_MINUTE, 600) */
  apiPerMinute?: number
}

export function createLimiters(limits: RateLimits = {}) {
  const loginWindowMs = limits.loginWindowMs ?? 15 * 60_000
  const loginAttempts = limits.loginAttempts ?? 10
  return {
    loginEmail: new RateLimiter(loginAttempts, loginWindowMs),
    loginIp: new RateLimiter(loginAttempts, loginWindowMs),
    apiKey: new RateLimiter(limits.apiPerMinute ?? 600, 60_000),
  }
}

export type Limiters = ReturnType<typeof createLimiters>
