import type { Logger } from '@moat/log'
import type { Queue, ReceivedJob } from './types'

export interface Consumer {
  /**
   * Stops taking jobs and waits for running ones, up to `timeoutMs`; jobs whose handlers are still
   * running then are released (made visible again at once) for another worker to take.
   */
  stop(timeoutMs?: number): Promise<void>
  /** jobs whose handlers are running now */
  readonly inFlight: number
}

/**
 * Runs `handle` on jobs from `queue` with at most `concurrency` at once. The handler deletes its
 * job itself (inside the transaction that records the outcome); a handler that throws leaves the
 * job to reappear after its visibility timeout. While a handler runs, its job's visibility is
 * extended every half timeout, so only a dead worker's jobs come back.
 */
export function consume<T>(
  queue: Queue<T>,
  options: {
    concurrency: number
    visibilityTimeout: number
    log: Logger
    handle: (job: ReceivedJob<T>) => Promise<void>
  },
): Consumer {
  const controller = new AbortController()
  const running = new Map<Promise<void>, { receipt: string; heartbeat: NodeJS.Timeout }>()
  let slotFreed: () => void = () => {}

  const loop = async (): Promise<void> => {
    while (!controller.signal.aborted) {
      if (running.size >= options.concurrency) {
        await new Promise<void>((resolve) => {
          slotFreed = resolve
        })
        continue
      }
      let jobs: ReceivedJob<T>[]
      try {
        jobs = await queue.receive({
          max: options.concurrency - running.size,
          visibilityTimeout: options.visibilityTimeout,
          waitSeconds: 5,
          signal: controller.signal,
        })
      } catch (err) {
        if (controller.signal.aborted) return
        options.log.error({ err, queue: queue.name }, 'receiving jobs failed; retrying in 1s')
        await new Promise((resolve) => setTimeout(resolve, 1000))
        continue
      }
      for (const job of jobs) {
        // while the handler runs, keep the job hidden: a slow job must not be handed to a second
        // worker; if this process dies, the extensions stop and the job comes back
        const heartbeat = setInterval(
          () => {
            queue.changeVisibility(job.receipt, options.visibilityTimeout).catch(() => {})
          },
          (options.visibilityTimeout * 1000) / 2,
        )
        const task = options
          .handle(job)
          .catch((err: unknown) => {
            options.log.error({ err, queue: queue.name, jobId: job.id }, 'job failed; it will be retried')
          })
          .finally(() => {
            clearInterval(heartbeat)
            running.delete(task)
            slotFreed()
          })
        running.set(task, { receipt: job.receipt, heartbeat })
      }
    }
  }
  const looping = loop()

  return {
    get inFlight() {
      return running.size
    },
    async stop(timeoutMs = 30_000) {
      controller.abort()
      slotFreed()
      await looping
      let timer: NodeJS.Timeout | undefined
      await Promise.race([
        Promise.all(running.keys()),
        new Promise((resolve) => {
          timer = setTimeout(resolve, timeoutMs)
        }),
      ])
      clearTimeout(timer)
      // out of time: hand what is left back to the queue rather than wait for its visibility timeout
      const left = [...running.values()]
      for (const { heartbeat } of left) clearInterval(heartbeat)
      await Promise.all(left.map(({ receipt }) => queue.changeVisibility(receipt, 0).catch(() => false)))
      if (left.length)
        options.log.warn(
          { queue: queue.name, released: left.length },
          'stopped with jobs unfinished; released them',
        )
    },
  }
}
