#!/usr/bin/env node
// The `moat` command. Moat runs its TypeScript sources directly through tsx.
import { register } from 'tsx/esm/api'

register()
const { main } = await import('../src/main.ts')
await main(process.argv)
