import './provided'

export * from './database'
export * from './harness'
export * from './peers'
export * from './wait'
export * from './s3'
