import net from 'node:net'

/**
 * A bare PostgreSQL wire-protocol client for tests that need control the `postgres` driver does
 * not give: chosen statement names, a Parse and its Execute in separate Syncs, dropping the socket.
 */
export interface WireClient {
  /** Simple query protocol; resolves with the text of every data row's first column. */
  query(sql: string): Promise<WireResult>
  /** Parse into `name` ('' = the unnamed statement), then Sync. */
  parse(name: string, sql: string): Promise<WireResult>
  /** Bind statement `name` with text parameters, Execute, Sync. */
  execute(name: string, params?: string[]): Promise<WireResult>
  /** Drops the connection without a Terminate message, as a crashed client would. */
  destroy(): void
  /** Sends Terminate and closes. */
  end(): Promise<void>
}

export interface WireResult {
  rows: string[]
  error: string | undefined
  /** transaction status from ReadyForQuery: I idle, T in a transaction, E in a failed one */
  status: string
}

export async function connectWire(url: string): Promise<WireClient> {
  const { hostname, port, pathname, username } = new URL(url)
  const socket = net.connect({ port: Number(port || 5432), host: hostname })
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  let buffer = Buffer.alloc(0)
  let waiting: ((r: WireResult) => void) | null = null
  let current: WireResult = { rows: [], status: '', error: undefined }
  socket.on('data', (data) => {
    buffer = Buffer.concat([buffer, data])
    while (buffer.length >= 5) {
      const length = 1 + buffer.readInt32BE(1)
      if (buffer.length < length) return
      const type = String.fromCharCode(buffer[0] ?? 0)
      const body = buffer.subarray(5, length)
      buffer = buffer.subarray(length)
      if (type === 'D') {
        const columns = body.readInt16BE(0)
        if (columns > 0) {
          const size = body.readInt32BE(2)
          current.rows.push(size < 0 ? 'NULL' : body.subarray(6, 6 + size).toString('utf8'))
        }
      } else if (type === 'E') {
        // fields: a type byte then a C string; M is the message
        let at = 0
        while (at < body.length && body[at] !== 0) {
          const field = String.fromCharCode(body[at] ?? 0)
          const end = body.indexOf(0, at + 1)
          if (field === 'M') current.error = body.subarray(at + 1, end).toString('utf8')
          at = end + 1
        }
      } else if (type === 'Z') {
        current.status = String.fromCharCode(body[0] ?? 0)
        const done = waiting
        const result = current
        waiting = null
        current = { rows: [], status: '', error: undefined }
        done?.(result)
      }
    }
  })
  socket.on('error', () => {})

  const message = (type: string, ...parts: Buffer[]): Buffer => {
    const body = Buffer.concat(parts)
    const header = Buffer.alloc(5)
    header.write(type, 0, 'latin1')
    header.writeInt32BE(body.length + 4, 1)
    return Buffer.concat([header, body])
  }
  const cstring = (s: string) => Buffer.from(`${s}\0`, 'utf8')
  const int16 = (n: number) => {
    const b = Buffer.alloc(2)
    b.writeInt16BE(n)
    return b
  }
  const int32 = (n: number) => {
    const b = Buffer.alloc(4)
    b.writeInt32BE(n)
    return b
  }
  const roundTrip = (data: Buffer): Promise<WireResult> =>
    new Promise((resolve, reject) => {
      if (waiting) throw new Error('one request at a time')
      const timer = setTimeout(() => reject(new Error('no ReadyForQuery within 10s')), 10_000)
      waiting = (r) => {
        clearTimeout(timer)
        resolve(r)
      }
      socket.write(data)
    })

  const startupBody = Buffer.concat([
    int32(196608),
    cstring('user'),
    cstring(username || 'postgres'),
    cstring('database'),
    cstring(pathname.slice(1) || 'postgres'),
    Buffer.from([0]),
  ])
  const startup = Buffer.concat([int32(startupBody.length + 4), startupBody])
  const ready = await roundTrip(startup)
  if (ready.error) throw new Error(`startup failed: ${ready.error}`)

  const sync = message('S')
  return {
    query: (sql) => roundTrip(message('Q', cstring(sql))),
    parse: (name, sql) =>
      roundTrip(Buffer.concat([message('P', cstring(name), cstring(sql), int16(0)), sync])),
    execute: (name, params = []) =>
      roundTrip(
        Buffer.concat([
          message(
            'B',
            cstring(''),
            cstring(name),
            int16(0),
            int16(params.length),
            ...params.flatMap((p) => [int32(Buffer.byteLength(p)), Buffer.from(p, 'utf8')]),
            int16(0),
          ),
          message('E', cstring(''), int32(0)),
          sync,
        ]),
      ),
    destroy: () => socket.destroy(),
    end: () =>
      new Promise<void>((resolve) => {
        socket.end(message('X'), () => resolve())
      }),
  }
}
