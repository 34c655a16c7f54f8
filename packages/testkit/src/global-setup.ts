import type { TestProject } from 'vitest/node'
import { CLAMD_BINARY, type Clamd, startClamd } from './peers'

declare module 'vitest' {
  export interface ProvidedContext {
    /** `tcp://127.0.0.1:PORT` of the run's clamd, or '' when clamd is not installed */
    clamdUrl: string
    /** why there is no clamd */
    clamdMissing: string
  }
}

let clamd: Clamd | undefined

/** Starts one clamd for the whole test run. Without it, clamd tests skip, except under CI=true. */
export async function setup(project: TestProject): Promise<void> {
  if (!CLAMD_BINARY) {
    if (process.env.CI === 'true') throw new Error('CI=true but clamd is not installed: apt-get install clamav-daemon')
    project.provide('clamdUrl', '')
    project.provide('clamdMissing', 'clamd is not installed (apt-get install clamav-daemon)')
    return
  }
  clamd = await startClamd()
  project.provide('clamdUrl', clamd.url)
  project.provide('clamdMissing', '')
}

export async function teardown(): Promise<void> {
  await clamd?.stop()
}
