import { fileURLToPath } from 'node:url'
import { generateOpenApi } from './app'

/** Where the checked-in OpenAPI document lives. */
export const OPENAPI_FILE = fileURLToPath(new URL('../../../openapi/openapi.json', import.meta.url))

/** The document as checked in: two-space JSON with a final newline. */
export function openApiJson(): string {
  return `${JSON.stringify(generateOpenApi(), null, 2)}\n`
}
