import net from 'node:net'
import { PGlite } from '@electric-sql/pglite'
import { btree_gin } from '@electric-sql/pglite/contrib/btree_gin'
import { pg_trgm } from '@electric-sql/pglite/contrib/pg_trgm'

/**
 * Embedded PostgreSQL: one PGlite instance served over the PostgreSQL wire protocol on loopback,
 * so that every Moat process (the stack, a separate scan worker, the CLI) talks to it with the
 * same `postgres` driver as to a real server.
 *
 * PGlite is a single backend, so every connection shares its session state. This server makes
 * that safe:
 * - connections take the backend one unit at a time (the messages up to a Sync or a simple
 *   Query); a connection that leaves a transaction open, or has parsed the unnamed statement
 *   without executing it yet, keeps the backend until it is done, so transactions and
 *   parse/bind/execute sequences of different connections never interleave;
 * - named prepared statements and portals are renamed per connection (`c7_s1`), so that two
 *   clients that both prepare `s1` do not collide, and are deallocated when the connection ends.
 * (`@electric-sql/pglite-socket` interleaves extended-protocol messages of different connections,
 * which breaks the unnamed statement; hence this.)
 */
export interface EmbeddedPostgres {
  url: string
  port: number
  /** the whole cluster as a tarball, to start another instance from */
  snapshot(): Promise<Blob>
  close(): Promise<void>
}

const SSL_REQUEST = 80877103
const GSSENC_REQUEST = 80877104
const CANCEL_REQUEST = 80877102

export async function startEmbeddedPostgres(options: {
  /** a directory, or `memory://` */
  dataDir: string
  port?: number
  /** start from this snapshot (`dumpEmbeddedPostgres`) instead of an empty cluster */
  snapshot?: Blob
}): Promise<EmbeddedPostgres> {
  const db = await PGlite.create(options.dataDir, {
    // contrib extensions the migrations create (archive search: trigram and tenant-first GIN indexes)
    extensions: { pg_trgm, btree_gin },
    ...(options.snapshot ? { loadDataDir: options.snapshot } : {}),
  })
  let tail: Promise<void> = Promise.resolve()
  /** The backend lock: resolves with a release function once every earlier holder has released. */
  const acquire = (): Promise<() => void> => {
    let release!: () => void
    const held = new Promise<void>((resolve) => {
      release = resolve
    })
    const previous = tail
    tail = previous.then(() => held)
    return previous.then(() => release)
  }
  const sockets = new Set<net.Socket>()
  let nextConnection = 1
  let closed = false

  const server = net.createServer((socket) => {
    sockets.add(socket)
    const prefix = `c${nextConnection++}_`
    const named = new Set<string>()
    let buffer = Buffer.alloc(0)
    let started = false
    let pending: Buffer[] = []
    let release: (() => void) | null = null
    let unnamedParsed = false
    let chain: Promise<void> = Promise.resolve()

    const run = (unit: Buffer, executes: boolean, parsesUnnamed: boolean): void => {
      chain = chain
        .then(async () => {
          if (!release) release = await acquire()
          if (parsesUnnamed) unnamedParsed = true
          if (executes) unnamedParsed = false
          const replies: Buffer[] = []
          try {
            await db.execProtocolRawStream(new Uint8Array(unit), {
              onRawData: (data) => {
                if (parsesUnnamed) replies.push(Buffer.from(data))
                if (!socket.destroyed) socket.write(Buffer.from(data))
              },
            })
            // a Parse that failed leaves nothing to execute: the client gives up on the query
            if (parsesUnnamed && hasErrorResponse(Buffer.concat(replies))) unnamedParsed = false
          } finally {
            if (!db.isInTransaction() && !unnamedParsed) {
              const r = release
              release = null
              r?.()
            }
          }
        })
        .catch((err: unknown) => {
          socket.destroy(err instanceof Error ? err : new Error(String(err)))
        })
    }

    socket.on('data', (data) => {
      buffer = buffer.length ? Buffer.concat([buffer, data]) : data
      for (;;) {
        if (!started) {
          if (buffer.length < 8) return
          const length = buffer.readInt32BE(0)
          if (buffer.length < length) return
          const code = buffer.readInt32BE(4)
          const message = Buffer.from(buffer.subarray(0, length))
          buffer = buffer.subarray(length)
          if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
            socket.write('N')
            continue
          }
          if (code === CANCEL_REQUEST) {
            socket.end()
            return
          }
          started = true
          run(message, false, false)
          continue
        }
        if (buffer.length < 5) return
        const length = 1 + buffer.readInt32BE(1)
        if (buffer.length < length) return
        const type = buffer[0]
        const message = renameStatements(Buffer.from(buffer.subarray(0, length)), prefix, named)
        buffer = buffer.subarray(length)
        if (type === 0x58 /* X: Terminate */) {
          socket.end()
          return
        }
        pending.push(message)
        // S: Sync, Q: Query, H: Flush end a unit of work
        if (type === 0x53 || type === 0x51 || type === 0x48) {
          const unit = pending
          pending = []
          const executes = unit.some((m) => m[0] === 0x45 /* E */ || m[0] === 0x51 /* Q */)
          const parsesUnnamed = unit.some((m) => m[0] === 0x50 /* P */ && m[5] === 0)
          run(Buffer.concat(unit), executes, parsesUnnamed && !executes)
        }
      }
    })
    socket.on('close', () => {
      sockets.delete(socket)
      chain = chain.then(async () => {
        if (closed) {
          // the server is shutting down: hand the backend on so that close() can finish
          const r = release
          release = null
          r?.()
          return
        }
        if (!release && !named.size) return
        release ??= await acquire()
        // the client went away: undo what it left open and forget its statements
        if (db.isInTransaction()) await db.exec('ROLLBACK').catch(() => {})
        for (const name of named) await db.exec(`DEALLOCATE "${name}"`).catch(() => {})
        const r = release
        release = null
        r()
      })
    })
    socket.on('error', () => {})
  })

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve())
  })
  const port = (server.address() as net.AddressInfo).port
  return {
    port,
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async snapshot() {
      const release = await acquire()
      try {
        return await db.dumpDataDir('none')
      } finally {
        release()
      }
    },
    async close() {
      closed = true
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      await tail
      await db.close()
    },
  }
}

/**
 * Prefixes the statement and portal names in Parse, Bind, Describe and Close messages with the
 * connection's prefix. The unnamed statement and portal stay unnamed.
 */
function renameStatements(message: Buffer, prefix: string, named: Set<string>): Buffer {
  const type = message[0]
  const rename = (name: Buffer, statement: boolean): Buffer => {
    if (!name.length) return name
    const renamed = `${prefix}${name.toString('utf8')}`
    if (statement) named.add(renamed)
    return Buffer.from(renamed, 'utf8')
  }
  const cstring = (at: number): [Buffer, number] => {
    const end = message.indexOf(0, at)
    return [message.subarray(at, end), end + 1]
  }
  let parts: Buffer[]
  if (type === 0x50 /* P: Parse(statement, query, ...) */) {
    const [name, rest] = cstring(5)
    parts = [rename(name, true), Buffer.from([0]), message.subarray(rest)]
  } else if (type === 0x42 /* B: Bind(portal, statement, ...) */) {
    const [portal, afterPortal] = cstring(5)
    const [statement, rest] = cstring(afterPortal)
    parts = [
      rename(portal, false),
      Buffer.from([0]),
      rename(statement, true),
      Buffer.from([0]),
      message.subarray(rest),
    ]
  } else if (type === 0x44 /* D: Describe */ || type === 0x43 /* C: Close */) {
    const kind = message[5]
    const [name, rest] = cstring(6)
    if (type === 0x43 && kind === 0x53 && name.length) named.delete(`${prefix}${name.toString('utf8')}`)
    parts = [
      Buffer.from([kind ?? 0]),
      type === 0x43 ? renameOnly(name, prefix) : rename(name, kind === 0x53),
      Buffer.from([0]),
      message.subarray(rest),
    ]
  } else {
    return message
  }
  const body = Buffer.concat(parts)
  const header = Buffer.alloc(5)
  header[0] = type
  header.writeInt32BE(body.length + 4, 1)
  return Buffer.concat([header, body])
}

function hasErrorResponse(replies: Buffer): boolean {
  for (let at = 0; at + 5 <= replies.length; at += 1 + replies.readInt32BE(at + 1)) {
    if (replies[at] === 0x45 /* E: ErrorResponse */) return true
  }
  return false
}

function renameOnly(name: Buffer, prefix: string): Buffer {
  return name.length ? Buffer.from(`${prefix}${name.toString('utf8')}`, 'utf8') : name
}
