import { Detector } from './src/engine'
import { normalHeaders, smallModel } from './test/helpers'
const d = new Detector({ model: smallModel(), authservId: 'x' })
const env = { mailFrom: '', rcptTo: ['bob@example.net'], clientIp: null, helo: null }
const head = (e: string[] = []) => normalHeaders(e).join('\r\n')
const cases: Record<string, () => Buffer> = {
  anchorsNoClose: () => Buffer.from(`${head(['Content-Type: text/html'])}\r\n\r\n${'<a'.repeat(200000)}`),
  styleNoClose: () => Buffer.from(`${head(['Content-Type: text/html'])}\r\n\r\n${'<a style="x"'.repeat(40000)}`),
  styleNoClose2: () => Buffer.from(`${head(['Content-Type: text/html'])}\r\n\r\n${'<b style=""'.repeat(45000)}`),
  hiddenMany: () => Buffer.from(`${head(['Content-Type: text/html'])}\r\n\r\n${'<i style="display:none">ab</i>'.repeat(17000)}`),
}
for (const [n, f] of Object.entries(cases)) {
  const raw = f(); const t = performance.now()
  try { const a = await d.analyze(raw, env); console.log(n, raw.length, (performance.now()-t).toFixed(0)+'ms', a.timings, a.hits.map(h=>h.name).join(' ')) } catch (e) { console.log(n, 'THREW', (e as Error).message.slice(0,200)) }
}
