export { type Api, type ApiDeps, createApi, generateOpenApi, openApiDocument } from './app'
export { OPENAPI_FILE, openApiJson } from './openapi-file'
export { PROBLEM_BASE, type Problem } from './problems'
export { type ApiServer, startApi } from './server'
