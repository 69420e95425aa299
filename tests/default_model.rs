//! The shipped default model (www/models/fashion-vit): it loads, declares its
//! photo preprocessing, and still reaches 91% top-1 on a fixed 1,000-image
//! subset of the Fashion-MNIST test set, on the CPU backend.

use std::path::Path;

use burn::tensor::Device;
use vitrine::train::data::{self as fashion_mnist, LABELS};
use vitrine::train::eval;
use vitrine::{Checkpoint, Classifier};

#[test]
fn shipped_model_loads_in_the_timm_layout_with_its_labels() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("www/models/fashion-vit");
    let from_disk = Checkpoint::from_path(&dir).expect("the shipped files load");
    let embedded = Checkpoint::default_model();
    assert_eq!(from_disk.layout, vitrine::Layout::Timm);
    assert_eq!(from_disk.labels, LABELS.map(String::from).to_vec());
    assert_eq!(
        from_disk.config, embedded.config,
        "the CLI embeds the same model"
    );
    assert!(
        from_disk.preprocess.photo.invert_light_background && from_disk.preprocess.photo.fit_object
    );
    let size = std::fs::metadata(dir.join("model.safetensors"))
        .unwrap()
        .len();
    assert!(size <= 2_000_000, "weights are {size} bytes, over 2 MB");
}

#[test]
fn shipped_model_reaches_91_percent_on_a_fixed_subset() {
    let dir = Path::new(fashion_mnist::DEBIAN_DIR);
    let test = fashion_mnist::load_split(dir, "t10k").expect(
        "Fashion-MNIST test set (apt-get install dataset-fashion-mnist; ./build.sh test does)",
    );
    // Every tenth test image: 1,000 images, 100 per class give or take, fed
    // as training saw them (the photo steps are for photos; `vitrine eval`
    // reports both ways).
    let mut classifier = Classifier::new(Checkpoint::default_model(), Device::flex());
    classifier.preprocess.photo = Default::default();
    let confusion = eval::confusion(&classifier, &test, (0..test.len()).step_by(10)).unwrap();
    let n: usize = confusion.iter().flatten().sum();
    let accuracy = eval::accuracy(&confusion);
    println!("top-1 {:.2}% on {n} images", accuracy * 100.0);
    assert_eq!(n, 1000);
    assert!(accuracy >= 0.91, "top-1 {:.2}% < 91%", accuracy * 100.0);
}
