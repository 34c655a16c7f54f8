// npm run openapi: writes the OpenAPI document the routes declare to openapi/openapi.json
import { writeFileSync } from 'node:fs'
import { OPENAPI_FILE, openApiJson } from '../openapi-file'

writeFileSync(OPENAPI_FILE, openApiJson())
console.log(`wrote ${OPENAPI_FILE}`)
