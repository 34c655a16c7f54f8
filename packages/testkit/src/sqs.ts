import { SQSClient } from '@aws-sdk/client-sqs'
import { startS3Emulator, type TestS3 } from './s3'

export interface TestSqs {
  /** the emulator's endpoint, `http://127.0.0.1:<port>` */
  endpoint: string
  region: string
  /** queue URL prefix: a queue named `scan` is at `${queueUrlPrefix}scan` */
  queueUrlPrefix: string
  /** the environment that points Moat's SQS adapter at the emulator (`MOAT_QUEUE=sqs`) */
  env(prefix?: string): Record<string, string>
  client(): SQSClient
  /** the same emulator's S3 side */
  s3: TestS3
  stop(): Promise<void>
}

/**
 * An SQS endpoint on loopback for tests: the `fauxqs` emulator (npm) that `startS3Emulator` starts
 * (one emulator serves S3 and SQS on the same port; pass a running one to share it). It speaks
 * the SQS JSON protocol (long polling, visibility timeouts, delays, batches, redrive to a
 * dead-letter queue), so `SqsQueue` runs unchanged against it; no AWS account or network is
 * involved. Differences from AWS that matter here: a short poll (`WaitTimeSeconds=0`) always sees
 * every message, the oldest message's age is not published, and messages up to 1 MiB are accepted
 * (Moat enforces 256 KiB itself).
 */
export async function startSqsEmulator(shared?: TestS3): Promise<TestSqs> {
  const s3 = shared ?? (await startS3Emulator())
  const endpoint = s3.endpoint
  const region = 'us-east-1'
  // the URLs fauxqs gives its queues when started with host 127.0.0.1 (they name a queue;
  // requests go to `endpoint`)
  const queueUrlPrefix = `http://sqs.${region}.127.0.0.1:${new URL(endpoint).port}/000000000000/`
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
    s3,
    stop: async () => {
      if (!shared) await s3.stop()
    },
  }
}
