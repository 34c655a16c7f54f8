import './provided'

export * from './database'
export * from './harness'
export * from './peers'
export * from './s3'
export * from './sqs'
export * from './wait'
