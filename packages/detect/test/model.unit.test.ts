import { describe, expect, it } from 'vitest'
import { Detector } from '../src/engine'
import type { Overlay } from '../src/model'
import { message, smallModel } from './helpers'

const model = smallModel()

const spammy = message(
  ['From: Deals <deals@bulk-offers.biz>', 'To: bob@example.net', 'Subject: casino bonus winner'],
  'claim your free money prize now, casino bonus lottery winner, cheap pills offer',
)
const hammy = message(
  ['From: Carol <carol@example.org>', 'To: bob@example.net', 'Subject: project meeting agenda'],
  'the quarterly budget review meeting agenda and the team notes draft for the project schedule',
)

function merged(a: Overlay, b: ReadonlyMap<number, number>): Map<number, number> {
  const out = new Map(a)
  for (const [f, w] of b) out.set(f, (out.get(f) ?? 0) + w)
  return out
}

describe('ContentModel with tenant overlays', () => {
  it('the small synthetic model separates its two kinds of message', () => {
    expect(model.score(model.features(spammy))).toBeGreaterThan(0.7)
    expect(model.score(model.features(hammy))).toBeLessThan(0.3)
  })

  it("learn moves a message to the reported side for the tenant; the global model's score is unchanged", () => {
    const features = model.features(spammy)
    const globalBefore = model.score(features)
    const weightsBefore = Buffer.from(model.global.serialize())

    const delta = model.learn(features, 0, new Map())
    expect(delta.size).toBeGreaterThan(0)
    const tenant = merged(new Map(), delta)
    // at least 0.2 past 0.5 on the reported side
    expect(model.score(features, tenant)).toBeLessThanOrEqual(0.3)
    expect(model.score(features)).toBe(globalBefore)
    expect(model.score(features, new Map())).toBe(globalBefore)
    expect(Buffer.from(model.global.serialize()).equals(weightsBefore)).toBe(true)

    // and back: a later spam report for the same message moves it to spam again
    const back = model.learn(features, 1, tenant)
    expect(model.score(features, merged(tenant, back))).toBeGreaterThanOrEqual(0.7)
    expect(model.score(features)).toBe(globalBefore)
  })

  it('learning spam on a ham message works the same way', () => {
    const features = model.features(hammy)
    const globalBefore = model.score(features)
    const delta = model.learn(features, 1, new Map())
    expect(model.score(features, delta)).toBeGreaterThanOrEqual(0.7)
    expect(model.score(features)).toBe(globalBefore)
  })

  it('learn returns nothing when the model already agrees', () => {
    expect(model.learn(model.features(spammy), 1, new Map()).size).toBe(0)
    expect(model.learn(model.features(hammy), 0, new Map()).size).toBe(0)
  })

  it('learn does not modify the overlay it is given', () => {
    const features = model.features(spammy)
    const overlay = new Map([[features[0] as number, 0.5]])
    model.learn(features, 0, overlay)
    expect([...overlay]).toEqual([[features[0], 0.5]])
  })

  it("one tenant's overlay does not affect another tenant", async () => {
    const features = model.features(spammy)
    const tenantA = new Map(model.learn(features, 0, new Map()))
    const tenantB: Overlay = new Map()
    const detector = new Detector({ model, authservId: 'mx.moat.test' })
    const envelope = {
      mailFrom: 'deals@bulk-offers.biz',
      rcptTo: ['bob@example.net'],
      clientIp: null,
      helo: null,
    }
    const forA = await detector.analyze(spammy, envelope, async () => tenantA)
    const forB = await detector.analyze(spammy, envelope, async () => tenantB)
    const global = await detector.analyze(spammy, envelope)
    expect(forA.probability).toBeLessThanOrEqual(0.3)
    expect(forA.hits.find((h) => h.name.startsWith('CONTENT_'))?.name).toBe('CONTENT_HAM')
    expect(forB.probability).toBe(global.probability)
    expect(forB.hits.find((h) => h.name.startsWith('CONTENT_'))?.name).toBe('CONTENT_SPAM')
    expect(forB.score).toBe(global.score)
    expect(forA.score).toBeLessThan(forB.score)
    // tenant A's corrections for this message leave an unrelated message alone
    const other = model.features(hammy)
    expect(model.score(other, tenantA)).toBeLessThan(0.3)
  })

  it('a detector without a model says so and scores content as neutral', async () => {
    const detector = new Detector({ model: null, authservId: 'mx.moat.test' })
    const a = await detector.analyze(spammy, {
      mailFrom: '',
      rcptTo: ['bob@example.net'],
      clientIp: null,
      helo: null,
    })
    expect(a.probability).toBeNull()
    expect(a.hits.map((h) => h.name)).toContain('CONTENT_MODEL_MISSING')
    expect(a.features.length).toBe(0)
  })
})
