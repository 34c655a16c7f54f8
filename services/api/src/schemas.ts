import { z } from '@hono/zod-openapi'

export const PageQuery = z.object({
  limit: z.coerce.number().int().min(1).max(200).default(50).openapi({ description: 'items per page' }),
  cursor: z
    .string()
    .min(1)
    .optional()
    .openapi({ description: "the previous page's `nextCursor`; omit for the first page" }),
})

export function pageOf<T extends z.ZodType>(item: T, name: string) {
  return z
    .object({
      items: z.array(item),
      nextCursor: z.string().nullable().openapi({ description: 'null on the last page' }),
    })
    .openapi(name)
}

/** Cuts a `limit + 1` row fetch down to one page, with the cursor of the next one. */
export function page<T extends { id: string }>(rows: T[], limit: number) {
  const items = rows.slice(0, limit)
  return { items, nextCursor: rows.length > limit ? (items.at(-1)?.id ?? null) : null }
}

export const IdParam = z.object({
  id: z
    .string()
    .min(1)
    .openapi({ param: { name: 'id', in: 'path' }, example: 'dom_01jdx3m2k8c7q4v9w0y5z6t1ab' }),
})

/** Dates go out as ISO 8601 strings. */
export const Timestamp = z.string().openapi({ format: 'date-time', example: '2026-01-31T12:00:00.000Z' })

export function iso(date: Date): string
export function iso(date: Date | null): string | null
export function iso(date: Date | null): string | null {
  return date ? date.toISOString() : null
}

export const json = <T extends z.ZodType>(schema: T) => ({ content: { 'application/json': { schema } } })

/** The optional `Idempotency-Key` of a POST that creates something (see `idempotent()`). */
export const IdempotencyHeaders = z.object({
  'idempotency-key': z.string().min(1).max(255).optional().openapi({
    description:
      'any unique string (a UUID): a retry with the same key within 24 hours gets the first answer, status and body, and creates nothing; the same key with another body is 422 `idempotency-key-reused`',
    example: '4f9c2a51-7e0b-4d1a-9a8e-2c5b7f3e1d60',
  }),
})
