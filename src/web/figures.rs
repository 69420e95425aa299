//! The papers' figures, as the page asks for them: of the kept image and
//! the model (`figures`), and the PCA of the last images' patch features
//! (`featurePca`).

use js_sys::Uint8Array;
use serde::Serialize;
use wasm_bindgen::prelude::*;

use super::{F32s, Vitrine, js_error, to_js};

#[wasm_bindgen]
impl Vitrine {
    /// The papers' figures of the kept image: `{tokenNorms [L, T],
    /// registerShare [L, H] (empty without registers), positionSimilarity
    /// [N, N], filters [k, P·P·C], filterVariance [k]}` as Float32Arrays
    /// (see `figures::TokenFigures` and `figures::FilterComponents`).
    #[wasm_bindgen(unchecked_return_type = "Figures")]
    pub async fn figures(&self) -> Result<JsValue, JsError> {
        let (f, filters) = self.viewer.figures().await.map_err(js_error)?;
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Figures {
            token_norms: F32s,
            register_share: F32s,
            position_similarity: F32s,
            filters: F32s,
            filter_variance: F32s,
        }
        Ok(to_js(&Figures {
            token_norms: f.token_norms.as_slice().into(),
            register_share: f.register_share.as_slice().into(),
            position_similarity: f.position_similarity.as_slice().into(),
            filters: filters.components.as_slice().into(),
            filter_variance: filters.variance.as_slice().into(),
        }))
    }

    /// The PCA of the patch features of the last `images` images
    /// classified (1 to 4; fewer when fewer were), fitted over all of them
    /// (DINOv2's figure): `FeaturePca` in www/vitrine.d.ts. With
    /// `foreground`, the first component splits off the background first.
    #[wasm_bindgen(js_name = featurePca, unchecked_return_type = "FeaturePca")]
    pub async fn feature_pca(&self, images: u32, foreground: bool) -> Result<JsValue, JsError> {
        let (pca, used) = self
            .viewer
            .feature_pca(images as usize, foreground)
            .await
            .map_err(js_error)?;
        #[derive(Serialize)]
        struct Image {
            input: F32s,
            first: F32s,
            #[serde(with = "serde_wasm_bindgen::preserve")]
            foreground: Uint8Array,
            rgb: F32s,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Pca {
            images: Vec<Image>,
            variance: F32s,
            first_variance: f32,
        }
        Ok(to_js(&Pca {
            images: used
                .iter()
                .enumerate()
                .map(|(i, image)| Image {
                    input: image.input.as_slice().into(),
                    first: pca.first[i].as_slice().into(),
                    foreground: Uint8Array::from(pca.foreground[i].as_slice()),
                    rgb: pca.rgb[i].as_slice().into(),
                })
                .collect(),
            variance: pca.variance.as_slice().into(),
            first_variance: pca.first_variance,
        }))
    }
}
