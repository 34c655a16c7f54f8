import type { Api } from './app'

type OpenAPIObject = ReturnType<Api['getOpenAPI31Document']>

const escapeHtml = (s: string) =>
  s.replace(/[&<>"]/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[ch] ?? ch)

/**
 * The docs at /docs: every operation with its summary, and the OpenAPI document to load into any
 * client or viewer. Plain HTML, so it works without reaching a CDN.
 */
export function docsPage(doc: OpenAPIObject): string {
  const rows = Object.entries(doc.paths ?? {}).flatMap(([path, item]) =>
    ['get', 'post', 'put', 'patch', 'delete'].flatMap((method) => {
      const op = item[method as 'get']
      return op
        ? [
            `<tr><td><code>${method.toUpperCase()}</code></td><td><code>${escapeHtml(path)}</code></td><td>${escapeHtml(op.summary ?? '')}</td></tr>`,
          ]
        : []
    }),
  )
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(doc.info.title)}</title>
<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}td{padding:.2rem .8rem .2rem 0;vertical-align:top}</style>
</head><body>
<h1>${escapeHtml(doc.info.title)}</h1>
<p>${escapeHtml(doc.info.description ?? '')}</p>
<p>The whole contract, with every schema: <a href="/openapi.json">/openapi.json</a> (OpenAPI ${escapeHtml(doc.openapi)}).</p>
<table>${rows.join('\n')}</table>
</body></html>
`
}
