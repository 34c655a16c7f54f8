/**
 * Polls `fn` until it returns a truthy value and resolves with it; rejects after `timeoutMs`
 * naming `what` was awaited.
 *
 * @example
 * const trace = await eventually('delivery', async () => (await traceOf(id))?.status === 'delivered' && trace)
 */
export async function eventually<T>(
  what: string,
  fn: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await fn()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}
