import { z } from '@hono/zod-openapi'
import { MoatError, type MoatErrorCode } from '@moat/core'
import type { Context } from 'hono'
import { HTTPException } from 'hono/http-exception'
import type { ContentfulStatusCode } from 'hono/utils/http-status'
import type { ZodError } from 'zod'

/** Every problem `type` is `${PROBLEM_BASE}<slug>`; the slug is what programs switch on. */
export const PROBLEM_BASE = 'https://moat.dev/problems/'

/** An RFC 9457 problem; `errors` lists each invalid field of a request that failed validation. */
export const ProblemSchema = z
  .object({
    type: z.string().openapi({ example: `${PROBLEM_BASE}not-found` }),
    title: z.string().openapi({ example: 'Not found' }),
    status: z.number().int().openapi({ example: 404 }),
    detail: z.string().openapi({ example: 'no domain dom_01jdx3m2k8c7q4v9w0y5z6t1ab' }),
    hint: z.string().optional().openapi({ description: 'what to do about it' }),
    errors: z.array(z.object({ field: z.string(), message: z.string() })).optional(),
  })
  .openapi('Problem')

export type Problem = z.infer<typeof ProblemSchema>

const TITLES: Record<number, [slug: string, title: string]> = {
  400: ['invalid-request', 'Invalid request'],
  401: ['unauthorized', 'Not signed in'],
  403: ['forbidden', 'Not allowed'],
  404: ['not-found', 'Not found'],
  409: ['conflict', 'Conflict'],
  415: ['unsupported-media-type', 'Unsupported media type'],
  422: ['invalid', 'Invalid'],
  429: ['rate-limited', 'Too many requests'],
  500: ['internal', 'Internal error'],
  502: ['bad-gateway', 'Upstream service failed'],
}

/** Thrown by handlers for answers that are not domain errors: 401, 403, 429. */
export class ApiProblem extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    detail: string,
    readonly slug = TITLES[status]?.[0] ?? 'error',
    /** response headers to send with the problem, e.g. `Retry-After` */
    readonly headers: Record<string, string> = {},
  ) {
    super(detail)
  }
}

const STATUS_OF: Record<MoatErrorCode, ContentfulStatusCode> = {
  not_found: 404,
  forbidden: 403,
  conflict: 409,
  invalid: 422,
  verification_failed: 422,
}

export function problem(
  status: ContentfulStatusCode,
  detail: string,
  extra: Partial<Problem> & { slug?: string } = {},
): Problem {
  const { slug, ...rest } = extra
  const [defaultSlug, title] = TITLES[status] ?? ['error', 'Error']
  return { type: `${PROBLEM_BASE}${slug ?? defaultSlug}`, title, status, detail, ...rest }
}

export function sendProblem(c: Context, p: Problem): Response {
  return c.body(JSON.stringify(p), p.status as ContentfulStatusCode, {
    'content-type': 'application/problem+json',
  })
}

/** A zod failure as a 400 problem naming every invalid field (`body.email`, `query.limit`). */
export function validationProblem(error: ZodError, target: string): Problem {
  const errors = error.issues.map((issue) => ({
    field: [target === 'json' ? 'body' : target, ...issue.path.map(String)].join('.'),
    message: issue.message,
  }))
  return problem(400, errors.map((e) => `${e.field}: ${e.message}`).join('; '), { errors })
}

/** The one error handler: domain errors map to their status, anything unexpected is a bare 500. */
export function toProblem(err: unknown): Problem {
  if (err instanceof MoatError) {
    const slug = err.code.replace(/_/g, '-')
    return problem(STATUS_OF[err.code], err.message, { slug, ...(err.hint ? { hint: err.hint } : {}) })
  }
  if (err instanceof ApiProblem) return problem(err.status, err.message, { slug: err.slug })
  if (err instanceof HTTPException) {
    return problem(err.status as ContentfulStatusCode, err.message || 'the request could not be read')
  }
  return problem(500, 'something went wrong on our side; it has been logged')
}

/** The error responses every route documents, by status. */
export function problemResponses(...statuses: number[]) {
  return Object.fromEntries(
    statuses.map((status) => [
      status,
      {
        description: TITLES[status]?.[1] ?? 'Error',
        content: { 'application/problem+json': { schema: ProblemSchema } },
      },
    ]),
  )
}
