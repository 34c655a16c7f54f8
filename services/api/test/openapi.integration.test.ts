import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateOpenApi, OPENAPI_FILE, openApiJson } from '../src/index'
import { startTestApi, type TestApi } from './api'

let api: TestApi
beforeAll(async () => {
  api = await startTestApi()
})
afterAll(async () => {
  await api?.close()
})

const METHODS = ['get', 'post', 'put', 'patch', 'delete'] as const

describe('the OpenAPI document', () => {
  it('the checked-in openapi/openapi.json is what the routes generate', () => {
    const checkedIn = readFileSync(OPENAPI_FILE, 'utf8')
    expect(
      checkedIn === openApiJson(),
      'openapi/openapi.json is out of date: run `npm run openapi` and commit the result',
    ).toBe(true)
  })

  it('is served at /openapi.json as OpenAPI 3.1, and /docs lists every operation', async () => {
    const res = await api.call('GET', '/openapi.json')
    expect(res.status).toBe(200)
    expect(res.body).toEqual(generateOpenApi())
    expect(res.body.openapi).toBe('3.1.0')
    const docs = await api.call('GET', '/docs')
    expect(docs.status).toBe(200)
    expect(docs.headers.get('content-type')).toContain('text/html')
    expect(docs.body).toContain('href="/openapi.json"')
    for (const path of Object.keys(res.body.paths)) expect(docs.body).toContain(`<code>${path}</code>`)
  })

  it('every operation documents its success and problem responses', () => {
    const doc = generateOpenApi()
    for (const [path, item] of Object.entries(doc.paths ?? {})) {
      for (const method of METHODS) {
        const op = item[method]
        if (!op) continue
        const statuses = Object.keys(op.responses ?? {})
        expect(
          statuses.some((s) => s.startsWith('2')),
          `${method} ${path}`,
        ).toBe(true)
        const problems = statuses.filter((s) => !s.startsWith('2'))
        expect(problems.length, `${method} ${path} documents no error`).toBeGreaterThan(0)
        for (const s of problems) {
          expect(Object.keys(op.responses?.[s]?.content ?? {}), `${method} ${path} ${s}`).toEqual([
            'application/problem+json',
          ])
        }
      }
    }
  })

  it('every operation but signup, login and accepting an invitation needs credentials: 401 without them', async () => {
    const doc = generateOpenApi()
    const checked: string[] = []
    for (const [path, item] of Object.entries(doc.paths ?? {})) {
      for (const method of METHODS) {
        const open = ['post /v1/signup', 'post /v1/login', 'post /v1/invitations/accept']
        if (!item[method] || open.includes(`${method} ${path}`)) continue
        const res = await api.call(method.toUpperCase(), path.replace('{id}', 'x'), {
          body: method === 'get' || method === 'delete' ? undefined : {},
        })
        expect(res.status, `${method} ${path}`).toBe(401)
        expect(res.body.type, `${method} ${path}`).toBe('https://moat.dev/problems/unauthorized')
        checked.push(`${method} ${path}`)
      }
    }
    expect(checked.length).toBeGreaterThan(5)
  })
})
