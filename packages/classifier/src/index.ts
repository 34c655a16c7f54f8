export { type LabeledMessage, loadLabeledDir, loadSpamAssassin, mulberry32, shuffled } from './corpus'
export {
  crossValidate,
  DEFAULT_TRAIN,
  type EvalReport,
  evaluateModel,
  type TrainOptions,
  trainModel,
  trainOnVectors,
} from './evaluate'
export {
  DEFAULT_BITS,
  DEFAULT_FEATURES,
  type ExtractOptions,
  extractFeatures,
  type FeatureConfig,
  featureNames,
  fnv1a,
  stripHtml,
  tokenize,
} from './features'
export { chi2Q, FisherModel, type FisherOptions } from './fisher'
export { FEATURE_VERSION, LogisticRegression, type LogRegOptions } from './logreg'
export { computeMetrics, type Metrics, recallAtFpr, rocAuc } from './metrics'
export { type ParsedMessage, parseMessage } from './mime'
