/** Values the global setup provides to every test file (`inject('clamdUrl')`). */
import type {} from 'vitest'

declare module 'vitest' {
  export interface ProvidedContext {
    /** `tcp://127.0.0.1:PORT` of the run's clamd, or '' when clamd is not installed */
    clamdUrl: string
    /** why there is no clamd */
    clamdMissing: string
  }
}
