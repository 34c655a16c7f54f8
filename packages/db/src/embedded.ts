import net from 'node:net'
import { PGlite } from '@electric-sql/pglite'

/**
 * Embedded PostgreSQL: one PGlite instance served over the PostgreSQL wire protocol on loopback,
 * so that every Moat process (the stack, a separate scan worker, the CLI) talks to it with the
 * same `postgres` driver as to a real server.
 *
 * PGlite is a single backend. This server lets many connections share it one unit at a time: a
 * unit is the messages up to a Sync or a simple Query, and a connection that leaves a transaction
 * open keeps the backend until it commits or rolls back. Transactions from different connections
 * therefore never interleave. (`@electric-sql/pglite-socket` interleaves extended-protocol messages
 * of different connections outside transactions, which breaks the unnamed portal; hence this.)
 */
export interface EmbeddedPostgres {
  url: string
  port: number
  close(): Promise<void>
}

const SSL_REQUEST = 80877103
const GSSENC_REQUEST = 80877104
const CANCEL_REQUEST = 80877102

export async function startEmbeddedPostgres(options: {
  /** a directory, or `memory://` */
  dataDir: string
  port?: number
}): Promise<EmbeddedPostgres> {
  const db = await PGlite.create(options.dataDir)
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

  const server = net.createServer((socket) => {
    sockets.add(socket)
    let buffer = Buffer.alloc(0)
    let started = false
    let pending: Buffer[] = []
    let release: (() => void) | null = null
    let chain: Promise<void> = Promise.resolve()

    const run = (unit: Buffer): void => {
      chain = chain
        .then(async () => {
          if (!release) release = await acquire()
          try {
            await db.execProtocolRawStream(new Uint8Array(unit), {
              onRawData: (data) => {
                if (!socket.destroyed) socket.write(Buffer.from(data))
              },
            })
          } finally {
            if (!db.isInTransaction()) {
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
          run(message)
          continue
        }
        if (buffer.length < 5) return
        const length = 1 + buffer.readInt32BE(1)
        if (buffer.length < length) return
        const type = buffer[0]
        const message = Buffer.from(buffer.subarray(0, length))
        buffer = buffer.subarray(length)
        if (type === 0x58 /* X: Terminate */) {
          socket.end()
          return
        }
        pending.push(message)
        // S: Sync, Q: Query, H: Flush end a unit of work
        if (type === 0x53 || type === 0x51 || type === 0x48) {
          const unit = Buffer.concat(pending)
          pending = []
          run(unit)
        }
      }
    })
    socket.on('close', () => {
      sockets.delete(socket)
      chain = chain.then(async () => {
        if (release) {
          // the client went away inside a transaction: undo it and free the backend
          await db.exec('ROLLBACK').catch(() => {})
          const r = release
          release = null
          r()
        }
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
    async close() {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      await tail
      await db.close()
    },
  }
}
