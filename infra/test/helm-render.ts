import fs from 'node:fs'
import path from 'node:path'
import YAML from 'yaml'

/**
 * Renders a Helm chart's templates without Helm (not installable here): a small evaluator for the
 * subset of Go templates the Moat chart uses, and nothing more. Supported: `{{ }}` with `-` trim
 * markers; `.Values…`, `.Release.Name`, `$`, `$var…`; `if`/`else`/`end`; `range $k, $v := X`
 * (maps in sorted key order, like Helm) and `range $v := X`; pipelines with `|`; the functions
 * `quote`, `toYaml`, `nindent`, `indent`, `not`, `and`, `or`, `eq`, `default`. Anything else is
 * an error, so the chart cannot drift into constructs this test does not understand.
 */
export function renderChart(
  chartDir: string,
  options: { values?: Record<string, unknown>; releaseName?: string } = {},
): { file: string; text: string }[] {
  const defaults = YAML.parse(fs.readFileSync(path.join(chartDir, 'values.yaml'), 'utf8')) as Record<
    string,
    unknown
  >
  const values = merge(defaults, options.values ?? {})
  const root = { Values: values, Release: { Name: options.releaseName ?? 'moat', Namespace: 'default' } }
  const dir = path.join(chartDir, 'templates')
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((file) => ({ file, text: render(fs.readFileSync(path.join(dir, file), 'utf8'), root) }))
}

/** Every non-empty YAML document of the rendered chart, parsed; a YAML error throws with the file. */
export function renderManifests(
  chartDir: string,
  options?: Parameters<typeof renderChart>[1],
): { file: string; doc: Record<string, unknown> }[] {
  return renderChart(chartDir, options).flatMap(({ file, text }) =>
    YAML.parseAllDocuments(text).flatMap((d) => {
      if (d.errors.length) throw new Error(`${file}: ${d.errors[0]?.message}\n${text}`)
      const doc = d.toJS() as Record<string, unknown> | null
      return doc ? [{ file, doc }] : []
    }),
  )
}

function merge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a }
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k]
    out[k] =
      v &&
      typeof v === 'object' &&
      !Array.isArray(v) &&
      prev &&
      typeof prev === 'object' &&
      !Array.isArray(prev)
        ? merge(prev as Record<string, unknown>, v as Record<string, unknown>)
        : v
  }
  return out
}

type Node =
  | { kind: 'text'; text: string }
  | { kind: 'out'; expr: string }
  | { kind: 'if'; cond: string; yes: Node[]; no: Node[] }
  | { kind: 'range'; keyVar?: string; valueVar?: string; expr: string; body: Node[] }

interface Scope {
  dot: unknown
  root: unknown
  vars: Map<string, unknown>
}

function render(source: string, root: unknown): string {
  const nodes = parse(tokenize(source))
  return run(nodes, { dot: root, root, vars: new Map() })
}

function tokenize(source: string): (string | { action: string })[] {
  const out: (string | { action: string })[] = []
  const re = /\{\{(-?)\s*(.*?)\s*(-?)\}\}/gs
  let last = 0
  let trimNext = false
  for (let m = re.exec(source); m; m = re.exec(source)) {
    let text = source.slice(last, m.index)
    if (trimNext) text = text.replace(/^\s+/, '')
    if (m[1] === '-') text = text.replace(/\s+$/, '')
    out.push(text)
    out.push({ action: m[2] ?? '' })
    trimNext = m[3] === '-'
    last = m.index + m[0].length
  }
  let tail = source.slice(last)
  if (trimNext) tail = tail.replace(/^\s+/, '')
  out.push(tail)
  return out
}

function parse(tokens: (string | { action: string })[]): Node[] {
  let i = 0
  const block = (stops: string[]): { nodes: Node[]; stop: string } => {
    const nodes: Node[] = []
    while (i < tokens.length) {
      const t = tokens[i++]
      if (typeof t === 'string') {
        if (t) nodes.push({ kind: 'text', text: t })
        continue
      }
      const a = t?.action ?? ''
      if (a.startsWith('/*')) continue
      const word = a.split(/\s+/)[0] ?? ''
      if (stops.includes(word)) return { nodes, stop: word }
      if (word === 'if') {
        const then = block(['else', 'end'])
        const otherwise = then.stop === 'else' ? block(['end']).nodes : []
        nodes.push({ kind: 'if', cond: a.slice(2).trim(), yes: then.nodes, no: otherwise })
      } else if (word === 'range') {
        const m = /^range\s+(?:(\$\w+)\s*(?:,\s*(\$\w+))?\s*:=\s*)?(.+)$/.exec(a)
        if (!m) throw new Error(`cannot parse {{ ${a} }}`)
        const body = block(['end']).nodes
        const [keyVar, valueVar] = m[2] ? [m[1], m[2]] : [undefined, m[1]]
        nodes.push({ kind: 'range', keyVar, valueVar, expr: m[3] ?? '', body })
      } else if (['else', 'end', 'define', 'template', 'include', 'with', 'block'].includes(word)) {
        throw new Error(`unsupported or unbalanced {{ ${a} }}`)
      } else nodes.push({ kind: 'out', expr: a })
    }
    if (stops.length) throw new Error(`missing {{ end }} (expected one of ${stops.join(', ')})`)
    return { nodes, stop: '' }
  }
  return block([]).nodes
}

function run(nodes: Node[], scope: Scope): string {
  let out = ''
  for (const node of nodes) {
    if (node.kind === 'text') out += node.text
    else if (node.kind === 'out') out += stringify(pipeline(node.expr, scope))
    else if (node.kind === 'if') out += run(truthy(pipeline(node.cond, scope)) ? node.yes : node.no, scope)
    else {
      const over = pipeline(node.expr, scope)
      const entries: [unknown, unknown][] = Array.isArray(over)
        ? over.map((v, k) => [k, v])
        : over && typeof over === 'object'
          ? Object.keys(over)
              .sort()
              .map((k) => [k, (over as Record<string, unknown>)[k]])
          : []
      for (const [k, v] of entries) {
        const vars = new Map(scope.vars)
        if (node.keyVar) vars.set(node.keyVar, k)
        if (node.valueVar) vars.set(node.valueVar, v)
        out += run(node.body, { dot: v, root: scope.root, vars })
      }
    }
  }
  return out
}

function stringify(v: unknown): string {
  if (v === undefined || v === null) return ''
  if (typeof v === 'object') throw new Error(`cannot print an object without toYaml: ${JSON.stringify(v)}`)
  return String(v)
}

function truthy(v: unknown): boolean {
  if (Array.isArray(v)) return v.length > 0
  if (v && typeof v === 'object') return Object.keys(v).length > 0
  return Boolean(v)
}

/** Splits on `sep` outside quotes and parentheses. */
function split(s: string, sep: RegExp): string[] {
  const parts: string[] = []
  let depth = 0
  let quote = false
  let cur = ''
  for (const ch of s) {
    if (ch === '"') quote = !quote
    if (!quote && ch === '(') depth++
    if (!quote && ch === ')') depth--
    if (!quote && depth === 0 && sep.test(ch)) {
      parts.push(cur)
      cur = ''
    } else cur += ch
  }
  parts.push(cur)
  return parts.map((p) => p.trim()).filter((p) => p !== '')
}

function pipeline(expr: string, scope: Scope): unknown {
  const [first, ...rest] = split(expr, /\|/)
  let value = command(first ?? '', scope, [])
  for (const cmd of rest) value = command(cmd, scope, [value])
  return value
}

const FUNCTIONS: Record<string, (...args: unknown[]) => unknown> = {
  quote: (v) => JSON.stringify(v === undefined || v === null ? '' : String(v)),
  toYaml: (v) => YAML.stringify(v).trimEnd(),
  nindent: (n, s) => `\n${indentText(Number(n), String(s))}`,
  indent: (n, s) => indentText(Number(n), String(s)),
  not: (v) => !truthy(v),
  and: (...vs) => vs.reduce((acc, v) => (truthy(acc) ? v : acc)),
  or: (...vs) => vs.reduce((acc, v) => (truthy(acc) ? acc : v)),
  eq: (a, b) => a === b,
  default: (d, v) => (truthy(v) ? v : d),
}

function indentText(n: number, s: string): string {
  return s
    .split('\n')
    .map((line) => (line ? ' '.repeat(n) + line : line))
    .join('\n')
}

function command(cmd: string, scope: Scope, piped: unknown[]): unknown {
  const words = split(cmd, /\s/)
  const head = words[0] ?? ''
  const fn = FUNCTIONS[head]
  if (fn) return fn(...words.slice(1).map((w) => term(w, scope)), ...piped)
  if (words.length !== 1 || piped.length) throw new Error(`unknown function in {{ ${cmd} }}`)
  return term(head, scope)
}

function term(word: string, scope: Scope): unknown {
  if (word.startsWith('(') && word.endsWith(')')) return pipeline(word.slice(1, -1), scope)
  if (word.startsWith('"')) return JSON.parse(word)
  if (/^-?\d+(\.\d+)?$/.test(word)) return Number(word)
  if (word === 'true' || word === 'false') return word === 'true'
  let base: unknown
  let rest: string
  if (word === '.') return scope.dot
  if (word.startsWith('$.')) {
    base = scope.root
    rest = word.slice(2)
  } else if (word.startsWith('$')) {
    const [name, ...path] = word.split('.')
    if (name === '$') return scope.root
    if (!scope.vars.has(name ?? '')) throw new Error(`undefined variable ${name}`)
    base = scope.vars.get(name ?? '')
    rest = path.join('.')
  } else if (word.startsWith('.')) {
    base = scope.dot
    rest = word.slice(1)
  } else throw new Error(`cannot evaluate ${word}`)
  for (const key of rest.split('.').filter(Boolean)) {
    base = base && typeof base === 'object' ? (base as Record<string, unknown>)[key] : undefined
  }
  return base
}
