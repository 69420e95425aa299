// What the wasm handle (src/web.rs, `Vitrine`) hands to JavaScript: the one
// declaration of the browser boundary's data, which www/'s checked modules
// are held to (`tsc` in tests/e2e/types.test.mjs). Each interface mirrors
// the serde struct of the same name in src/web.rs (camelCase fields), and
// the browser tests read every field of them.

/** A model's architecture, as `VitConfig` serialises it (the fields the page reads). */
export interface VitConfig {
  img_size: [number, number];
  patch_size: number;
  in_chans: number;
  embed_dim: number;
  depth: number;
  num_heads: number;
  num_classes: number;
  class_token: boolean;
  [field: string]: unknown;
}

/** `Vitrine.info()`, parsed. */
export interface ModelInfo {
  config: VitConfig;
  preprocess: { input_size: [number, number, number]; mean: number[]; std: number[]; [field: string]: unknown };
  labels: string[];
  /** What the loader assumed or left out: notes for the user, not errors. */
  notes: string[];
  /** What the model's config calls it (timm architecture, transformers repo or class), or null. */
  name: string | null;
  grid: [number, number];
  /** How many numbers the head sees (D, or 2·D for the class token beside the patches' mean). */
  pooledWidth: number;
  parameters: number;
  weightBytes: number;
  /** What runs it: "fused CPU kernels" or "Burn's operations". */
  executor: string;
  nativeSize: [number, number];
  prefixTokens: string[];
  mapNote: string;
  weightsKey: string | null;
  weightsKeys: string[];
  /**
   * The site's file of class names (`labels/imagenet-21k-goog.txt`) where
   * `labels` are placeholders for an ImageNet-21k set the module does not
   * carry: the worker fetches it and replaces them. Null otherwise.
   */
  labelsFile: string | null;
}

/** Milliseconds spent in each part of a request. */
export interface Timings {
  preprocess?: number;
  forward: number;
  readback: number;
}

/** `Vitrine.classify`: one image's outputs and attention maps. */
export interface Prediction {
  logits: Float32Array;
  /** False for a backbone: then `logits` are its features and `probabilities` empty. */
  hasHead: boolean;
  probabilities: Float32Array;
  /** The class token's attention [L, H, N], and its mean over heads [L, N]. */
  cls: Float32Array;
  clsMean: Float32Array;
  rollout: Float32Array;
  layers: number;
  heads: number;
  grid: [number, number];
  layerAttention?: Float32Array;
  layerMean?: Float32Array;
  /** The part of the image the model saw [x0, y0, x1, y1], in image pixels. */
  viewBox: Float64Array;
  /** The normalised [C, H, W] input. */
  input: Float32Array;
  timings: Timings;
}

/** `Vitrine.relevance`: why the model scored `class`. */
export interface RelevanceMaps {
  class: number;
  layers: number;
  gradRollout: Float32Array;
  chefer: Float32Array;
  /** Each head's gradient-weighted attention [L, H, N]. */
  heads: Float32Array;
  timings: Timings;
}

/** `Vitrine.walkthrough`: the forward pass step by step (src/walkthrough.rs). */
export interface Walkthrough {
  input: Float32Array;
  patchVectors: Float32Array;
  patchEmbeddings: Float32Array;
  prefixTokens: Float32Array;
  positionSimilarity: Float32Array;
  queries: Float32Array;
  keys: Float32Array;
  values: Float32Array;
  attention: Float32Array;
  normed: Float32Array;
  normed2: Float32Array;
  mlpOut: Float32Array;
  tokenNorms: Float32Array;
  meanDistance: Float32Array;
  pooled: Float32Array;
  logits: Float32Array;
  probabilities: Float32Array;
}

/**
 * `Vitrine.figures`: the papers' figures of the kept image. Each token's
 * length after each block, before the final norm [L, T] (prefix tokens
 * first); the share of the class token's attention each head gives the
 * registers [L, H] (empty without registers or a class token); the cosine
 * similarity of the patches' position embeddings [N, N]; the patch
 * embedding's first principal components [k, P·P·C] (each patch's pixels in
 * (row, column, channel) order) and the share of the variance of each [k].
 */
export interface Figures {
  tokenNorms: Float32Array;
  registerShare: Float32Array;
  positionSimilarity: Float32Array;
  filters: Float32Array;
  filterVariance: Float32Array;
}

/**
 * `Vitrine.featurePca`: the PCA of the patch features of the last images
 * classified (DINOv2's figure), fitted over all of them. Per image, the
 * oldest first: its model input [C, H, W] (normalised), each patch's first
 * component over all patches [N] (scaled to [0, 1], the border low), 1 for
 * a foreground patch [N], and the colours [N, 3] (each of the foreground's
 * first three components scaled to [0, 1]; 0 on the background). `variance`:
 * the three's shares of the foreground's variance; `firstVariance`: the
 * first component's share of all the patches'.
 */
export interface FeaturePca {
  images: { input: Float32Array; first: Float32Array; foreground: Uint8Array; rgb: Float32Array }[];
  variance: Float32Array;
  firstVariance: number;
}

/** `Vitrine.attention`: one layer's full attention [H, T, T] and its mean over heads [T, T]. */
export interface LayerAttention {
  layerAttention: Float32Array;
  layerMean: Float32Array;
}

/** `Vitrine.memory`: what the device's memory pools hold. */
export interface DevicePools {
  bytesInUse: number;
  bytesReserved: number;
}

/** What the page leaves on `window` for tests and the curious. */
declare global {
  interface Window {
    vitrineLast?: Prediction;
    vitrineWhy?: RelevanceMaps;
    vitrineWalk?: Walkthrough;
    vitrineFigures?: Figures;
    /** The feature PCA last drawn (www/pca.js), for tests. */
    vitrinePca?: FeaturePca;
    vitrineState?: import('./store.js').State;
    vitrineMemory?: () => Promise<{ wasmBytes: number; device: DevicePools | null }>;
    /** The second worker's memory while comparing (www/compare.js); null when not comparing. */
    vitrineCompareMemory?: () => Promise<{ wasmBytes: number; device: DevicePools | null } | null>;
    vitrineRelevance?: (k: number) => Promise<{ relevance?: RelevanceMaps; stale?: boolean }>;
    /** The bench page's figures, once its runs are done (www/bench.js). */
    vitrineBench?: unknown;
  }
}
