//! PyTorch files as people have them (`torch.save` zip archives and the
//! format before PyTorch 1.6: a bare state dict, `pytorch_model.bin` beside a transformers config, DINO's
//! training checkpoint with `teacher`, `student`, prefixes, arguments and
//! optimiser state), made by `tests/fixtures/make_fixtures.py torch` from
//! the golden fixtures' weights: each answers as its safetensors twin does,
//! within the golden bounds. And hostile ones, refused with their reason
//! and nothing run.

mod common;

use burn::tensor::Device;
use common::*;
use pollster::FutureExt;
use vitrine::checkpoint::LoadOptions;
use vitrine::{Checkpoint, Classifier};

fn torch(name: &str) -> std::path::PathBuf {
    fixtures().join("torch").join(name)
}

/// `weights` (a PyTorch file's bytes) with `model`'s own config.
fn with_config_of(model: &str, weights: &[u8], key: Option<&str>) -> Result<Checkpoint, String> {
    let config = std::fs::read(fixtures().join("models").join(model).join("config.json")).unwrap();
    LoadOptions::new()
        .file_name("model.pth")
        .checkpoint_key(key)
        .load(weights, Some(&config), None)
        .map_err(|e| e.to_string())
}

fn logits(ck: &Checkpoint, model: &str, stem: &str) -> Vec<f32> {
    let g = golden(model);
    Classifier::new(ck.clone(), Device::flex())
        .classify_input(&g[&format!("{stem}.input")].1, None)
        .block_on()
        .unwrap()
        .logits
}

#[test]
fn pytorch_files_answer_as_their_safetensors_do() {
    // A bare state dict in bfloat16.
    let pth = std::fs::read(torch("timm_d96.pth")).unwrap();
    let ck = with_config_of("timm_d96", &pth, None).unwrap();
    assert_eq!((ck.weights_key.clone(), ck.weights_keys.len()), (None, 0));
    let twin = Checkpoint::from_path(&fixtures().join("models/timm_d96")).unwrap();
    let want = logits(&twin, "timm_d96", "chelsea");
    assert_eq!(logits(&ck, "timm_d96", "chelsea"), want);
    // The same in PyTorch's format before 1.6.
    let legacy = std::fs::read(torch("timm_d96_legacy.pth")).unwrap();
    let ck = with_config_of("timm_d96", &legacy, None).unwrap();
    assert_eq!(logits(&ck, "timm_d96", "chelsea"), want);
    // A transformers folder with pytorch_model.bin (float16), found by name.
    let ck = Checkpoint::from_path(&torch("hf_deit")).unwrap();
    let twin = Checkpoint::from_path(&fixtures().join("models/hf_deit")).unwrap();
    assert_eq!(ck.config, twin.config);
    assert_eq!(
        logits(&ck, "hf_deit", "coffee"),
        logits(&twin, "hf_deit", "coffee")
    );
}

#[test]
fn dino_checkpoints_give_the_teacher_unless_asked() {
    let pth = std::fs::read(torch("dino_checkpoint.pth")).unwrap();
    let teacher = with_config_of("timm_gray", &pth, None).unwrap();
    let notes = teacher.notes.join("\n");
    assert!(
        notes.contains("the weights are `model.pth`'s `teacher` (it also holds `student`"),
        "{notes}"
    );
    assert!(
        notes.contains("the `backbone.` prefix is stripped; 2 tensors beside it"),
        "{notes}"
    );
    // Which state dict was read, among those the file holds (the page offers them).
    assert_eq!(teacher.weights_key.as_deref(), Some("teacher"));
    assert_eq!(teacher.weights_keys, ["teacher", "student"]);
    let twin = Checkpoint::from_path(&fixtures().join("models/timm_gray")).unwrap();
    let want = logits(&twin, "timm_gray", "camera");
    assert_eq!(logits(&teacher, "timm_gray", "camera"), want);
    // The student: DDP's `module.` and `backbone.` stripped, other weights.
    let student = with_config_of("timm_gray", &pth, Some("student")).unwrap();
    assert_eq!(student.weights_key.as_deref(), Some("student"));
    assert_eq!(student.weights_keys, ["teacher", "student"]);
    assert!(student.notes.iter().any(|n| n.contains("`module.` prefix")));
    assert!(max_abs_diff(&logits(&student, "timm_gray", "camera"), &want) > 1e-3);
    // A key the file does not have is named with the ones it has.
    let e = with_config_of("timm_gray", &pth, Some("ema")).unwrap_err();
    assert!(
        e.contains("has no `ema`; its keys: student, teacher, epoch"),
        "{e}"
    );
    // Without a config, the shapes are inferred from the teacher's tensors.
    let bare = LoadOptions::new()
        .file_name("checkpoint.pth")
        .load(&pth, None, None)
        .unwrap();
    assert_eq!((bare.config.embed_dim, bare.config.patch_size), (64, 4));
}

#[test]
fn hostile_and_damaged_files_are_refused_and_nothing_runs() {
    let marker = std::path::Path::new("/tmp/vitrine-evil-pickle-ran");
    let _ = std::fs::remove_file(marker);
    for (file, want) in [
        (
            "evil.pth",
            "`model.pth` asks to call `posix.system`: refused, vitrine only reads tensors",
        ),
        ("truncated.pth", "truncated or damaged zip archive"),
        ("lying_sizes.pth", "claims 1073741824 bytes from offset"),
        (
            "missing_storage.pth",
            "tensor `pos_embed` refers to storage `0`, which the archive does not hold",
        ),
    ] {
        let bytes = std::fs::read(torch(file)).unwrap();
        let e = with_config_of("timm_tiny", &bytes, None).unwrap_err();
        assert!(e.contains(want), "{file}: {e}");
        assert!(!e.contains('\n'), "{file}: one line: {e}");
    }
    // The format before 1.6, cut short in its pickle and in its storages.
    let legacy = std::fs::read(torch("timm_d96_legacy.pth")).unwrap();
    for (cut, want) in [
        (20, "ends inside an instruction"),
        (legacy.len() / 2, "is cut short or damaged: storage"),
        (legacy.len() - 1, "is cut short or damaged: storage"),
    ] {
        let e = with_config_of("timm_d96", &legacy[..cut], None).unwrap_err();
        assert!(e.contains(want), "cut at {cut}: {e}");
    }
    assert!(!marker.exists(), "the hostile pickle's command ran");
    // The CLI says the same, and exits as for any model that cannot load.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vitrine"))
        .args(["classify", "--model"])
        .arg(torch("evil.pth"))
        .arg(fixtures().join("images/chelsea.png"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("asks to call `posix.system`: refused"),
        "{stderr}"
    );
    assert!(!marker.exists(), "the hostile pickle's command ran");
}

#[test]
fn a_folder_finds_its_weights_by_name_or_alone() {
    let dir = Scratch::new("torch-folder");
    let d96 = fixtures().join("models/timm_d96");
    std::fs::copy(d96.join("config.json"), dir.join("config.json")).unwrap();
    let twin = Checkpoint::from_path(&d96).unwrap();
    let want = logits(&twin, "timm_d96", "chelsea");
    // A single .pth of any name.
    std::fs::copy(torch("timm_d96.pth"), dir.join("finetuned-epoch9.pth")).unwrap();
    let ck = Checkpoint::from_path(&dir).unwrap();
    assert_eq!(logits(&ck, "timm_d96", "chelsea"), want);
    // Two of them: which to load is the user's to say.
    std::fs::copy(
        torch("timm_d96_legacy.pth"),
        dir.join("finetuned-epoch3.pt"),
    )
    .unwrap();
    let e = Checkpoint::from_path(&dir)
        .expect_err("ambiguous")
        .to_string();
    assert!(
        e.contains("2 weights files and none named model.safetensors")
            && e.contains("finetuned-epoch3.pt, finetuned-epoch9.pth"),
        "{e}"
    );
    // model.pt is the one, beside others.
    std::fs::rename(dir.join("finetuned-epoch3.pt"), dir.join("model.pt")).unwrap();
    let ck = Checkpoint::from_path(&dir).unwrap();
    assert_eq!(logits(&ck, "timm_d96", "chelsea"), want);
}
