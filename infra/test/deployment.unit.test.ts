import fs from 'node:fs'
import path from 'node:path'
import { ENV_VARS, loadConfig } from '@moat/config'
import { describe, expect, it } from 'vitest'
import YAML from 'yaml'
import { renderManifests } from './helm-render'

/**
 * The deployment files, checked without Kubernetes, Helm or Terraform (none can be installed
 * here): the chart's templates are rendered by a small Go-template evaluator (`helm-render.ts`)
 * and every manifest parsed as YAML; the environment they give each service must be a valid Moat
 * configuration that sets every variable Moat reads. Terraform is only cross-checked for names.
 */

const root = path.resolve(import.meta.dirname, '../..')
const chart = path.join(root, 'infra/helm/moat')
const SERVICES = ['ingest', 'submission', 'scan', 'deliver', 'api', 'billing']

// biome-ignore lint/suspicious/noExplicitAny: rendered manifests are untyped YAML, inspected field by field
type Manifest = { kind: string; metadata: { name: string; annotations?: Record<string, string> }; spec: any }

function manifests(values?: Record<string, unknown>): Manifest[] {
  return renderManifests(chart, { values }).map((m) => m.doc as unknown as Manifest)
}
const byKind = (all: Manifest[], kind: string) => all.filter((m) => m.kind === kind)
const chartValues = YAML.parse(fs.readFileSync(path.join(chart, 'values.yaml'), 'utf8'))

/** The environment a service's pod gets: ConfigMap, then its own `env`, then placeholder secrets. */
function podEnv(all: Manifest[], service: string): Record<string, string> {
  const data = (byKind(all, 'ConfigMap')[0] as unknown as { data: Record<string, string> }).data
  const deployment = byKind(all, 'Deployment').find((d) => d.metadata.name === `moat-${service}`)
  const container = deployment?.spec.template.spec.containers[0]
  const own = Object.fromEntries(
    (container?.env ?? []).map((e: { name: string; value: string }) => [e.name, e.value]),
  )
  const placeholders: Record<string, string> = {
    MOAT_SENDER_POOLS: '{"default":[{"name":"direct"}]}',
    DATABASE_URL: 'postgres://moat:secret@db.internal:5432/moat',
    MOAT_STRIPE_SECRET_KEY: 'sk_test_placeholder',
    MOAT_STRIPE_WEBHOOK_SECRET: 'whsec_placeholder',
  }
  const secrets = Object.fromEntries(
    (chartValues.secretEnv as string[]).map((k) => [
      k,
      placeholders[k] ?? 'a-secret-value-of-32-characters!!',
    ]),
  )
  return { ...data, ...own, ...secrets }
}

describe('the Helm chart', () => {
  const all = manifests()

  it('renders to valid manifests: a Deployment, PodDisruptionBudget and (but billing) autoscaler per service', () => {
    expect(
      byKind(all, 'Deployment')
        .map((d) => d.metadata.name)
        .sort(),
    ).toEqual(SERVICES.map((s) => `moat-${s}`).sort())
    expect(
      byKind(all, 'PodDisruptionBudget')
        .map((d) => d.metadata.name)
        .sort(),
    ).toEqual(SERVICES.map((s) => `moat-${s}`).sort())
    expect(
      byKind(all, 'HorizontalPodAutoscaler')
        .map((d) => d.metadata.name)
        .sort(),
    ).toEqual(['api', 'deliver', 'ingest', 'scan', 'submission'].map((s) => `moat-${s}`))
    expect(byKind(all, 'ScaledObject')).toEqual([])
    for (const m of all) expect(m.kind, JSON.stringify(m).slice(0, 80)).toEqual(expect.any(String))
  })

  it('runs each service alone, with resources, probes on the ops port and a grace period past the shutdown deadline', () => {
    const shutdown = Number(chartValues.config.MOAT_SHUTDOWN_SECONDS)
    for (const d of byKind(all, 'Deployment')) {
      const service = d.metadata.name.replace('moat-', '')
      const pod = d.spec.template.spec
      const [moat] = pod.containers
      expect(moat.args).toEqual(['start', '--only', service])
      expect(moat.resources.requests).toEqual({ cpu: expect.anything(), memory: expect.any(String) })
      expect(moat.resources.limits.memory).toEqual(expect.any(String))
      expect(moat.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'metrics' })
      expect(moat.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'metrics' })
      expect(moat.ports[0]).toEqual({
        name: 'metrics',
        containerPort: Number(chartValues.config.MOAT_METRICS_PORT),
      })
      expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(shutdown)
      expect(d.spec.strategy.rollingUpdate.maxUnavailable).toBe(0)
    }
    // clamd beside each scan worker only, reached on loopback
    const scan = byKind(all, 'Deployment').find((d) => d.metadata.name === 'moat-scan')
    expect(scan?.spec.template.spec.containers.map((c: { name: string }) => c.name)).toEqual([
      'scan',
      'clamd',
    ])
    expect(chartValues.config.MOAT_CLAMD).toBe('tcp://127.0.0.1:3310')
  })

  it('puts SMTP behind a LoadBalancer that speaks the PROXY protocol to ingest, which expects it', () => {
    const smtp = byKind(all, 'Service').find((s) => s.metadata.name === 'moat-smtp')
    expect(smtp?.spec.type).toBe('LoadBalancer')
    expect(smtp?.spec.externalTrafficPolicy).toBe('Local')
    expect(smtp?.spec.ports).toEqual([{ name: 'smtp', port: 25, targetPort: 'smtp', protocol: 'TCP' }])
    expect(smtp?.spec.selector['app.kubernetes.io/component']).toBe('ingest')
    expect(smtp?.metadata.annotations?.['service.beta.kubernetes.io/aws-load-balancer-proxy-protocol']).toBe(
      '*',
    )
    expect(podEnv(all, 'ingest').MOAT_SMTP_PROXY_PROTOCOL).toBe('1')
    expect(loadConfig(podEnv(all, 'ingest')).smtp.proxyProtocol).toBe(true)
    expect(loadConfig(podEnv(all, 'api')).smtp.proxyProtocol).toBe(false)
  })

  it('sets every environment variable Moat reads, and each pod environment is a valid configuration', () => {
    const configMap = byKind(all, 'ConfigMap')[0] as unknown as { data: Record<string, string> }
    const set = new Set([...Object.keys(configMap.data), ...(chartValues.secretEnv as string[])])
    expect(ENV_VARS.filter((name) => !set.has(name))).toEqual([])
    // and nothing Moat does not read (a typo would silently do nothing)
    expect([...set].filter((name) => !ENV_VARS.includes(name))).toEqual([])
    for (const service of SERVICES) {
      const config = loadConfig(podEnv(all, service))
      expect(config.queue.kind, service).toBe('sqs')
      expect(config.metrics.host, service).toBe('0.0.0.0')
      // stateless pods: raw messages in S3
      expect(config.blobstore.kind, service).toBe('s3')
    }
  })

  it('documents every variable: in the README configuration table, and the secret ones in infra/README.md', () => {
    const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8')
    const table = readme.slice(readme.indexOf('## Configuration'))
    expect(ENV_VARS.filter((name) => !table.includes(`\`${name}\``))).toEqual([])
    const infra = fs.readFileSync(path.join(root, 'infra/README.md'), 'utf8')
    expect((chartValues.secretEnv as string[]).filter((name) => !infra.includes(`\`${name}\``))).toEqual([])
  })

  it('with KEDA on, scan and deliver scale on their SQS queue instead of CPU', () => {
    const keda = manifests({ keda: { enabled: true } })
    const scaled = byKind(keda, 'ScaledObject')
    expect(scaled.map((s) => s.metadata.name)).toEqual(['moat-deliver', 'moat-scan'])
    expect(scaled.map((s) => s.spec.triggers[0].metadata.queueURL)).toEqual([
      `${chartValues.config.MOAT_SQS_QUEUE_URL_PREFIX}deliver`,
      `${chartValues.config.MOAT_SQS_QUEUE_URL_PREFIX}scan`,
    ])
    expect(byKind(keda, 'HorizontalPodAutoscaler').map((h) => h.metadata.name)).toEqual([
      'moat-api',
      'moat-ingest',
      'moat-submission',
    ])
    expect(byKind(keda, 'TriggerAuthentication')).toHaveLength(1)
  })
})

describe('Terraform and compose', () => {
  const tf = (file: string) => fs.readFileSync(path.join(root, 'infra/terraform', file), 'utf8')

  it('Terraform makes a queue and a dead-letter queue per queue the code uses, named as the chart expects', () => {
    const sqs = tf('sqs.tf')
    expect(sqs).toMatch(/queues = toset\(\["scan", "deliver"\]\)/)
    // biome-ignore lint/suspicious/noTemplateCurlyInString: Terraform's interpolation, not JavaScript's
    expect(sqs).toContain('name                       = "${var.name}-${each.key}"')
    // biome-ignore lint/suspicious/noTemplateCurlyInString: Terraform's interpolation, not JavaScript's
    expect(sqs).toContain('name                      = "${var.name}-${each.key}-dead"')
    expect(sqs).toContain('maxReceiveCount     = var.max_receives')
    // the SqsQueue adapter derives the dead-letter queue as <queue>-dead
    expect(chartValues.config.MOAT_SQS_QUEUE_URL_PREFIX).toMatch(/\/moat-$/)
    expect(tf('outputs.tf')).toContain('output "sqs_queue_url_prefix"')
  })

  it('grants the pods only what the code calls on SQS, S3 and KMS', () => {
    const iam = tf('iam.tf')
    const actions = [...iam.matchAll(/"((?:sqs|s3|kms):\w+)"/g)].map((m) => m[1]).sort()
    expect(actions).toEqual(
      [
        'kms:Decrypt',
        'kms:GenerateDataKey',
        's3:AbortMultipartUpload',
        's3:DeleteObject',
        's3:GetObject',
        's3:ListBucket',
        's3:PutObject',
        'sqs:ChangeMessageVisibility',
        'sqs:DeleteMessage',
        'sqs:GetQueueAttributes',
        'sqs:GetQueueUrl',
        'sqs:ReceiveMessage',
        'sqs:SendMessage',
      ].sort(),
    )
    expect(iam).not.toMatch(/"(sqs|s3|kms):\*"/)
  })

  it('the compose file parses, runs every service in its own container, and gives each a valid configuration', () => {
    const compose = YAML.parse(fs.readFileSync(path.join(root, 'infra/compose/compose.yaml'), 'utf8'), {
      merge: true,
    })
    for (const service of SERVICES) {
      const s = compose.services[service]
      expect(s.command, service).toEqual(['start', '--only', service])
      const config = loadConfig(s.environment)
      expect(config.queue.kind).toBe('sqs')
      expect(config.blobstore.kind).toBe('s3')
    }
    expect(compose.services.scan.deploy.replicas).toBe(2)
  })
})
