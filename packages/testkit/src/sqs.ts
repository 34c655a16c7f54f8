import { SQSClient } from '@aws-sdk/client-sqs'
import { startFauxqs } from 'fauxqs'

export interface TestSqs {
  /** the emulator's endpoint, `http://127.0.0.1:<port>` */
  endpoint: string
  region: string
  /** queue URL prefix: a queue named `scan` is at `${queueUrlPrefix}scan` */
  queueUrlPrefix: string
  /** the environment that points Moat's SQS adapter at the emulator (`MOAT_QUEUE=sqs`) */
  env(prefix?: string): Record<string, string>
  client(): SQSClient
  stop(): Promise<void>
}

/**
 * An SQS endpoint on loopback for tests: the `fauxqs` emulator (npm) in this process, on an
 * ephemeral port. It speaks the SQS JSON protocol (long polling, visibility timeouts, delays,
 * batches, redrive to a dead-letter queue), so `SqsQueue` runs unchanged against it; no AWS account
 * or network is involved. Differences from AWS that matter here: a short poll (`WaitTimeSeconds=0`)
 * always sees every message, the oldest message's age is not published, and messages up to 1 MiB
 * are accepted (Moat enforces 256 KiB itself).
 */
export async function startSqsEmulator(): Promise<TestSqs> {
  const server = await startFauxqs({ port: 0, logger: false })
  const endpoint = `http://127.0.0.1:${server.port}`
  const region = 'us-east-1'
  // the URLs fauxqs gives its queues (they name a queue; requests go to `endpoint`)
  const queueUrlPrefix = `http://sqs.${region}.localhost:${server.port}/000000000000/`
  const credentials = { accessKeyId: 'test', secretAccessKey: 'test' }
  return {
    endpoint,
    region,
    queueUrlPrefix,
    env: (prefix = '') => ({
      MOAT_QUEUE: 'sqs',
      MOAT_SQS_ENDPOINT: endpoint,
      MOAT_SQS_REGION: region,
      MOAT_SQS_QUEUE_URL_PREFIX: `${queueUrlPrefix}${prefix}`,
      MOAT_SQS_CREATE_QUEUES: '1',
      AWS_ACCESS_KEY_ID: credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
    }),
    client: () => new SQSClient({ endpoint, region, credentials }),
    stop: () => server.stop(),
  }
}
