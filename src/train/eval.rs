//! The default model's accuracy: a classifier run on Fashion-MNIST's test
//! images, each through the model's own preprocessing.

use super::data::Split;
use crate::engine::{Classifier, top_k};
use crate::preprocess::preprocess;

/// Top-1 evaluation of a classifier on images `indices` of `split`, each
/// going through the model's own preprocessing (as a page or the CLI would
/// feed it): the 10×10 confusion matrix, rows true class, columns predicted.
pub fn confusion(
    classifier: &Classifier,
    split: &Split,
    indices: impl Iterator<Item = usize>,
) -> Result<[[usize; 10]; 10], String> {
    if classifier.config.num_classes != 10 {
        return Err(format!(
            "the model has {} classes; Fashion-MNIST has 10",
            classifier.config.num_classes
        ));
    }
    let indices: Vec<usize> = indices.collect();
    let mut inputs = Vec::new();
    for &i in &indices {
        let rgba: Vec<u8> = split
            .image(i)
            .iter()
            .flat_map(|&v| [v, v, v, 255])
            .collect();
        let x = preprocess(
            &rgba,
            split.cols as u32,
            split.rows as u32,
            &classifier.preprocess,
        )
        .map_err(|e| e.to_string())?;
        inputs.extend(x);
    }
    let logits = classifier.logits_batched(&inputs, 250);
    let mut confusion = [[0usize; 10]; 10];
    for (&i, row) in indices.iter().zip(logits.chunks(10)) {
        let predicted = top_k(row, 1)[0].0;
        confusion[split.labels[i] as usize][predicted] += 1;
    }
    Ok(confusion)
}

/// The share of the diagonal in a confusion matrix.
pub fn accuracy(confusion: &[[usize; 10]; 10]) -> f64 {
    let total: usize = confusion.iter().flatten().sum();
    let right: usize = (0..10).map(|c| confusion[c][c]).sum();
    right as f64 / total.max(1) as f64
}
