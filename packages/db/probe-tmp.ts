import postgres from 'postgres'
import { startEmbeddedPostgres } from './src/embedded.ts'
const pg = await startEmbeddedPostgres({ dataDir: 'memory://' })
const a = postgres(pg.url, { max: 1, onnotice: () => {} })
const b = postgres(pg.url, { max: 1, onnotice: () => {} })
console.log(await b`select 1 as one`)
try { await a.unsafe('select * from missing_table where id = $1', [1]) } catch (e) { console.log('a failed:', (e as Error).message) }
const t = Date.now()
const r = await Promise.race([b`select 2 as two`, new Promise((r) => setTimeout(() => r('TIMEOUT'), 3000))])
console.log('b:', r, Date.now() - t, 'ms')
await a.end(); await b.end(); await pg.close()
