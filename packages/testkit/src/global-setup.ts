import type { TestProject } from 'vitest/node'
import './provided'
import { CLAMD_BINARY, type Clamd, startClamd } from './peers'

let clamd: Clamd | undefined

/** Starts one clamd for the whole test run. Without it, clamd tests skip, except under CI=true. */
export async function setup(project: TestProject): Promise<void> {
  if (!CLAMD_BINARY) {
    if (process.env.CI === 'true')
      throw new Error('CI=true but clamd is not installed: apt-get install clamav-daemon')
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
