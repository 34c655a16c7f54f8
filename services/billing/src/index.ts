export {
  type BillingAccount,
  type BillingDeps,
  billingPeriod,
  changePlan,
  dailyUsage,
  failedInvoices,
  listPlans,
  type Plan,
  periodUsage,
  portalLink,
  previewInvoice,
  tenantPlan,
  type UsageTotals,
} from './accounts'
export { type BillingHold, billingHold, enforceTenant, tenantsToEnforce } from './enforcement'
export {
  type InvoiceLine,
  type InvoicePreview,
  invoicePreview,
  type PricedPlan,
  tierAmount,
  validateTiers,
} from './pricing'
export { reportIdentifier, reportUsage } from './reporter'
export { type BillingService, billingDeps, runBillingCycle, startBilling, webhookApp } from './service'
export {
  createStripeClient,
  createStripeGateway,
  type StripeConfig,
  type StripeGateway,
  StripeUnavailableError,
} from './stripe'
export { applySuspension, BILLING_SUSPENSION } from './suspension'
export { type EventOutcome, handleStripeEvent } from './webhooks'
