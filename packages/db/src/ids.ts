import { randomBytes } from 'node:crypto'

const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz' // Crockford base32, lower case

/**
 * A time-sortable, URL-safe identifier (ULID layout: 48 bits of milliseconds, 80 random bits),
 * with an optional type prefix so that an id says what it names.
 *
 * @example
 * newId('msg') // 'msg_01jdx3m2k8c7q4v9w0y5z6t1ab'
 */
export function newId(prefix?: string): string {
  let time = Date.now()
  let out = ''
  for (let i = 0; i < 10; i++) {
    out = ALPHABET[time % 32] + out
    time = Math.floor(time / 32)
  }
  const random = randomBytes(16)
  for (let i = 0; i < 16; i++) out += ALPHABET[(random[i] ?? 0) % 32]
  return prefix ? `${prefix}_${out}` : out
}
