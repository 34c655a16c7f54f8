export { objectStore, SERVICES, type ServiceName, type Stack, startStack } from './stack'
